/* fuzz_spiece.c — libFuzzer harness for the SentencePiece loader (text/spm_model.c): a
 * spiece.model protobuf plus the tokenizer_config.json beside it (special tokens, extra_ids).
 * Input: 2 bytes little-endian L, then L bytes of tokenizer_config.json (none when L = 0; L is
 * cut to what is there), then the spiece.model bytes. The tokenizer built is then used to encode
 * a fixed set of texts. */
#include "fuzz.h"
#include "text/tokenizer_impl.h"

#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t cl = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2, size -= 2;
    if (cl > size) cl = size;
    char mpath[64], cpath[64];
    int cfd = cl ? fz_memfile(data, cl, cpath, sizeof cpath) : -1;
    int mfd = fz_memfile(data + cl, size - cl, mpath, sizeof mpath);
    dfm_tokenizer *t = dfm_tok_new();
    if (t && mfd >= 0 && (!cl || cfd >= 0) && fz_note("load", dfm_tok_load_spm(t, mpath, cl ? cpath : NULL)) == 0)
        fz_use_tokenizer(t);
    dfm_tokenizer_free(t);
    if (cfd >= 0) close(cfd);
    if (mfd >= 0) close(mfd);
    return 0;
}
