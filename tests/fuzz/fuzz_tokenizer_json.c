/* fuzz_tokenizer_json.c — libFuzzer harness for the tokenizer.json loader (text/tokenizer_json.c):
 * load the bytes as a Hugging Face tokenizer.json (model, normalizers, pre-tokenizers,
 * post-processor, added tokens), then encode a fixed set of texts with what was built. */
#include "fuzz.h"
#include "text/tokenizer_impl.h"

#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fz_memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    dfm_tokenizer *t = dfm_tok_new();
    if (t && fz_note("load", dfm_tok_load_json(t, path)) == 0) fz_use_tokenizer(t);
    dfm_tokenizer_free(t);
    close(fd);
    return 0;
}
