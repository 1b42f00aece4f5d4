/* fuzz_captions.c — libFuzzer harness for the caption readers (data/captions.c): the bytes become
 * one caption source beside a media file in a scratch directory (removed before returning), and
 * the captions of that file and of one the source does not name are looked up twice (the
 * second time from the directory cache).
 * Input: byte 0 picks the source — 0 sidecar .txt, 1 sidecar .json, 2 meta.json,
 * 3 captions.json, 4 <prefix>_internvl.json, 5 a JSONL manifest (dfm-decode --captions FILE);
 * byte 1 bit 0 picks the caption field (default "caption", or "text"), bit 1 NeMo's cleaning
 * (dfm-decode --clean-captions: text/prompt_clean.h, then NeMo's white space); the rest is the file. */
#include "fuzz.h"
#include "data/captions.h"
#include "text/prompt_clean.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"sub/clip_sample1.txt", "sub/clip_sample1.json", "sub/meta.json",
                                        "sub/captions.json", "sub/clip_internvl.json", "manifest.jsonl"};
    if (size < 2 || size > (1 << 20)) return 0;
    int kind = data[0] % 6, field = data[1] & 1, clean = data[1] >> 1 & 1;
    char dir[512], media[600], other[600], manifest[600];
    if (fz_tmpdir(dir, sizeof dir)) return 0;
    snprintf(media, sizeof media, "%s/sub/clip_sample1.mp4", dir);
    snprintf(other, sizeof other, "%s/sub/other.png", dir);
    snprintf(manifest, sizeof manifest, "%s/manifest.jsonl", dir);
    if (fz_put(dir, names[kind], data + 2, size - 2) == 0 && fz_put(dir, "sub/clip_sample1.mp4", "", 0) == 0) {
        dfm_caption_opts o = {.manifest = kind == 5 ? manifest : NULL, .field = field ? "text" : NULL,
                              .prompt_clean = clean ? dfm_prompt_clean : NULL};
        dfm_captioner *c = NULL;
        if (fz_note("captioner", dfm_captioner_new(&c, &o)) == 0) {
            for (int round = 0; round < 2; round++) {
                const char *paths[2] = {media, other};
                for (int i = 0; i < 2; i++) {
                    dfm_captions caps;
                    memset(&caps, 0, sizeof caps);
                    if (dfm_captions_find(c, paths[i], &caps)) continue;
                    if (round == 0) fz_note(caps.source ? caps.source : "?", 0);
                    if (caps.n < 1 || !caps.source) abort(); /* at least the file-name caption */
                    for (int k = 0; k < caps.n; k++) (void)strlen(caps.text[k]);
                    dfm_captions_free(&caps);
                }
            }
            dfm_captioner_free(c);
        }
    }
    fz_rmtree(dir);
    return 0;
}
