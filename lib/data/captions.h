/* captions.h — finding the caption(s) of a media file (`dfm-decode --captions`).
 *
 * In `auto` mode the first source found wins, in this order:
 *   1. sidecar NAME.txt (whole file)                                     source "txt"
 *   2. sidecar NAME.json, string at `field` (default "caption")          source "json"
 *   3. meta.json in the file's directory: an array of objects, or an object with "items"
 *      (else "data"); matched by "file_name" (else "filename"); caption at `field`   "meta.json"
 *   4. captions.json in the directory: basename -> list of captions (one sample each) "captions.json"
 *   5. NeMo's <prefix>_internvl.json beside the file (JSON Lines; prefix = the name before its
 *      last "_sample", else the stem); "file_name" + caption at `field`, then "internvl",
 *      then "usr"                                                         "internvl"
 *   6. the file name: stem with '_' as spaces                             "filename"
 * With a JSONL manifest (mode = path to FILE.jsonl) that manifest is consulted first, matched by
 * "file_name" against the path relative to the manifest's directory or the basename.
 * Every caption is cleaned: a leading byte order mark (U+FEFF) dropped, whitespace trimmed,
 * runs of whitespace (line ends included: LF, CRLF, CR) collapsed to one space. Files may start
 * with a byte order mark and end lines with CRLF or CR (JSON Lines too). An empty or unreadable source falls through to the next. Directory-level files are parsed once
 * per directory and cached.
 *
 * NeMo's Wan caption cleaning (dfm-decode --clean-captions; opts.prompt_clean set), applied to
 * the caption(s) found, after the source is chosen:
 *   html.unescape twice, strip, every run of white space -> one space, strip
 * ref: NeMo AutoModel tools/diffusion/processors/wan.py _prompt_clean (without ftfy, which runs
 * there only when installed). White space is Python's str.isspace() (NeMo uses the re module):
 * Unicode White_Space plus U+001C..U+001F; diffusers' WanPipeline uses the regex module, whose \s
 * lacks those four, so the unescaping comes from text/prompt_clean.h and the white space rule
 * from here (dfm_caption_collapse_space). A caption that cleans to "" stays "" (NeMo encodes the
 * empty prompt; its file-name fallback applies only to a caption missing before cleaning), with
 * a warning naming the file.
 */
#ifndef DFM_DATA_CAPTIONS_H
#define DFM_DATA_CAPTIONS_H
#include <stddef.h>

typedef struct dfm_captioner dfm_captioner;

typedef struct {
    const char *manifest; /* FILE.jsonl or NULL (auto) */
    const char *field;    /* caption field for json/meta.json/jsonl; NULL = "caption" */
    /* NULL, or NeMo's cleaning on (see above) with diffusers' Wan prompt_clean as its unescaping
     * step: text/prompt_clean.h dfm_prompt_clean, passed in by the program because lib/data sits
     * below lib/text. Returns a malloc'd string, NULL when out of memory. */
    char *(*prompt_clean)(const char *s, size_t len);
} dfm_caption_opts;

int dfm_captioner_new(dfm_captioner **c, const dfm_caption_opts *opts);
void dfm_captioner_free(dfm_captioner *c);

typedef struct {
    char **text;        /* n cleaned captions (n >= 1), malloc'd */
    int n;
    const char *source; /* static string naming the source (see above) */
} dfm_captions;

/* Captions for the media file at `path`. Returns 0 (always at least the file-name caption) or
 * a negative code for an internal failure (out of memory). */
int dfm_captions_find(dfm_captioner *c, const char *path, dfm_captions *out);
void dfm_captions_free(dfm_captions *caps);

/* Drop a leading U+FEFF, trim, collapse whitespace runs to one space; in place. */
void dfm_caption_clean(char *s);

/* Python's re.sub(r"\s+", " ", s).strip() on UTF-8 s, in place: white space is str.isspace()
 * (U+0009..U+000D, U+001C..U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000); bytes that are not valid UTF-8 are kept and are not space. */
void dfm_caption_collapse_space(char *s);

#endif
