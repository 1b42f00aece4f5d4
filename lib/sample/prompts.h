/* prompts.h — prompt files as musubi-tuner writes them (reference/training.md 6): one prompt per
 * line, then options that override the defaults for that line only:
 *     a red fox in the snow --w 832 --h 480 --f 81 --d 42 --s 50 --g 5.0 --fs 3.0 --n blurry, low quality
 * --w width, --h height, --f frames, --d seed, --s steps, --g guidance, --fs flow shift, --n the
 * negative prompt (the rest of the line up to the next option). Blank lines and lines starting
 * with '#' are skipped. An unknown option or a bad value is an error naming the file, the line and
 * the option. Used by dfm-sample --prompts and dfm-train's sample.prompts.
 */
#ifndef DFM_SAMPLE_PROMPTS_H
#define DFM_SAMPLE_PROMPTS_H
#include "sample/pipeline.h"

typedef struct {
    dfm_sample_request *req; /* req[i].prompt / .negative point into text owned here */
    int *line;               /* the file line of each request */
    int n;
    char *text;              /* internal */
} dfm_prompt_list;

/* Read path; each request starts as a copy of defaults with the line's overrides. Sizes are left
 * as given (dfm_sample_round_size is the caller's). */
int dfm_prompts_load(dfm_prompt_list *l, const char *path, const dfm_sample_request *defaults);
void dfm_prompts_free(dfm_prompt_list *l);

#endif
