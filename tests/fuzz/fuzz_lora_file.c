/* fuzz_lora_file.c — libFuzzer harness for the Wan LoRA file reader and converter
 * (models/wan/lora_file.h, lora_convert.h): open the bytes as a LoRA .safetensors file (tensor
 * names split into module and part, the family, the module names, pairs, ranks, alphas from
 * .alpha tensors and the header metadata), print its summary with the consumer verdicts, and
 * convert it to each family in a scratch directory (values read, checked finite, folded,
 * rounded, written). Bounds: files listing more than 1 MiB of A/B values are not converted. */
#include "fuzz.h"
#include "base/buf.h"
#include "models/wan/lora_convert.h"
#include "models/wan/lora_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], dir[256], out[320];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dfm_wan_lora_file *f = NULL;
    size_t values = 0;
    if (fz_note("open", dfm_wan_lora_file_open(&f, path, 0)) == 0) {
        dfm_buf b = {0};
        fz_note("summary", dfm_wan_lora_summary(f, &b));
        dfm_buf_free(&b);
        for (int i = 0; i < f->n; i++) values += f->mods[i].a->nbytes + f->mods[i].b->nbytes;
        dfm_wan_lora_file_close(f);
        if (values <= ((size_t)1 << 20) && fz_tmpdir(dir, sizeof dir) == 0) {
            for (int to = 0; to < 4; to++) {
                snprintf(out, sizeof out, "%s/out%d%s", dir, to, to == DFM_WAN_LORA_TO_PEFT ? "" : ".safetensors");
                fz_note("convert", dfm_wan_lora_convert(path, out, to, NULL, NULL));
            }
            dfm_wan_lora_convert_opts o = {.alpha = 3.0f, .dtype = DFM_F16};
            snprintf(out, sizeof out, "%s/f16.safetensors", dir);
            fz_note("convert f16", dfm_wan_lora_convert(path, out, DFM_WAN_LORA_TO_MUSUBI, &o, NULL));
            fz_rmtree(dir);
        }
    }
    close(fd);
    return 0;
}
