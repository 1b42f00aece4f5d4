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
 */
#ifndef DFM_DATA_CAPTIONS_H
#define DFM_DATA_CAPTIONS_H

typedef struct dfm_captioner dfm_captioner;

typedef struct {
    const char *manifest; /* FILE.jsonl or NULL (auto) */
    const char *field;    /* caption field for json/meta.json/jsonl; NULL = "caption" */
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

#endif
