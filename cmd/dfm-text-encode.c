/* dfm-text-encode — captions (txt) -> UMT5 token ids and text-encoder states for every sample.
 * Thin: options and wiring; the work is lib/text/tokenizer.c, lib/models/wan/umt5.c and
 * lib/models/wan/text_stage.c. */
#include "base/cli.h"
#include "base/error.h"
#include "base/log.h"
#include "dist/dist.h"
#include "io/stream_map.h"
#include "models/wan/text_stage.h"
#include "tensor/ops.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: dfm-text-encode --model DIR [options] [INPUT...] < samples > samples\n"
    "       dfm-text-encode --tokenizer DIR --text-encoder DIR [options] ...\n"
    "Tokenize each sample's caption (txt) with the model's SentencePiece Unigram tokenizer and encode\n"
    "it with UMT5 (Wan 2.1's text encoder): tokens.npy (int32 [L]) and text.npy ([L, 4096]), L the\n"
    "token count including </s> (the rows the Wan pipeline keeps before zero-padding to 512).\n"
    "Reads msgpack or tar from INPUT files or stdin; other fields pass through; json gets 'text'.\n"
    "\n"
    "  --model DIR                 a diffusers Wan model (tokenizer/ and text_encoder/)\n"
    "  --tokenizer DIR             the tokenizer directory (tokenizer.json or spiece.model)\n"
    "  --text-encoder DIR          the text_encoder directory (config.json + safetensors)\n"
    "  --tokens-only               tokenize only: tokens.npy, no text.npy, no encoder loaded\n"
    "  --max-length N              tokens including </s> (default 512)\n"
    "  --dtype f32|bf16            compute: f32, or bf16 weights and GEMM inputs (default bf16:\n"
    "                              UMT5-XXL's weights take 9.3 GB, in f32 18.5 GB)\n"
    "  --keep-mapped               use the weights in place from the mapped files instead of laying\n"
    "                              them out at load (least memory, slower encodes)\n"
    "  --out-dtype f16|f32         stored text.npy dtype (default f16)\n"
    "  --device cpu|cuda           where to run (default cpu); cuda under a launcher (mpirun,\n"
    "                              srun): GPU (local rank mod visible GPUs), one per process\n"
    "  -j, --threads N             CPU threads (default, or 0: one per core)\n"
    "  -o, --output FILE           write to FILE (atomically) instead of stdout\n"
    "  --format msgpack|tar|tar.zst  stream framing (default msgpack)\n"
    "  --part K/N|auto             take only samples K, K+N, K+2N, ... (K from 0) of the INPUT\n"
    "                              files; auto: K/N from the launcher (mpirun, srun; 0/1 with\n"
    "                              none). A stream on a pipe is taken whole (the first stage splits)\n"
    "  --strict                    stop at the first bad sample (exit 1)\n"
    "  --force                     binary data to or from a terminal\n"
    "  --progress                  show the progress line even when stdout is a pipe\n"
    "  -q, --quiet                 no progress line\n"
    "  -h, --help                  this help;  --version  print the version\n";

enum { O_MODEL = 256, O_TOK, O_ENC, O_TONLY, O_MAXLEN, O_DTYPE, O_ODTYPE, O_DEVICE, O_KEEP };
static const struct option longopts[] = {
    {"model", 1, 0, O_MODEL},     {"tokenizer", 1, 0, O_TOK},    {"text-encoder", 1, 0, O_ENC},
    {"tokens-only", 0, 0, O_TONLY}, {"max-length", 1, 0, O_MAXLEN}, {"dtype", 1, 0, O_DTYPE},
    {"out-dtype", 1, 0, O_ODTYPE}, {"device", 1, 0, O_DEVICE},   {"threads", 1, 0, 'j'},
    {"keep-mapped", 0, 0, O_KEEP}, DFM_STREAM_OPTIONS,           {0, 0, 0, 0}};

static int map(void *c, dfm_sample *s) { return dfm_text_encode_sample(c, s); }

int main(int argc, char **argv)
{
    dfm_cli_init(argv[0]);
    dfm_text_opts to = {.max_length = 512, .out_dtype = DFM_F16};
    dfm_umt5_opts uo = {.device = DFM_CPU, .weights = DFM_BF16};
    dfm_map_opts mo = {.progress = "samples"};
    const char *model = NULL, *tokdir = NULL, *encdir = NULL;
    int c, threads = 0;
    static const char *const dtypes[] = {"f32", "bf16", NULL};
    static const char *const odtypes[] = {"f16", "f32", NULL};
    static const char *const devices[] = {"cpu", "cuda", NULL};
    while ((c = getopt_long(argc, argv, "j:" DFM_STREAM_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model = optarg; break;
        case O_TOK: tokdir = optarg; break;
        case O_ENC: encdir = optarg; break;
        case O_TONLY: to.tokens_only = 1; break;
        case O_MAXLEN: to.max_length = (int)dfm_parse_long("--max-length", optarg, 1, 1 << 20); break;
        case O_DTYPE: uo.weights = dfm_parse_choice("--dtype", optarg, dtypes) ? DFM_BF16 : DFM_F32; break;
        case O_ODTYPE: to.out_dtype = dfm_parse_choice("--out-dtype", optarg, odtypes) ? DFM_F32 : DFM_F16; break;
        case O_DEVICE: uo.device = dfm_parse_choice("--device", optarg, devices) ? DFM_CUDA : DFM_CPU; break;
        case O_KEEP: uo.keep_mapped = 1; break;
        case 'j': threads = dfm_parse_threads("--threads", optarg); break;
        default:
            if (!dfm_stream_opt(c, optarg, &mo, usage)) dfm_usage_bad_option(argc, argv, longopts);
        }
    }
    if (!model && !tokdir) dfm_usage_error("no --model DIR (or --tokenizer DIR and --text-encoder DIR)");
    if (!model && !encdir && !to.tokens_only) dfm_usage_error("--tokenizer needs --text-encoder DIR (or --tokens-only)");
    /* --part auto's K/N and the GPU (local rank) from the launcher */
    if (dfm_dist_place(&mo.part, uo.device)) dfm_usage_error("%s", dfm_errmsg());
    if (uo.device == DFM_CUDA && !dfm_device_available(DFM_CUDA)) dfm_usage_error("--device cuda: %s", dfm_errmsg());
    if (threads) dfm_ops_set_threads(threads);
    to.model = model ? model : encdir ? encdir : tokdir;
    dfm_counts counts;
    dfm_counts_init(&counts);
    dfm_tokenizer *tok = NULL;
    dfm_umt5 *enc = NULL;
    dfm_text_encoder *te = NULL;
    int status = DFM_EXIT_FAIL;
    if (dfm_tokenizer_load(&tok, tokdir ? tokdir : model)) {
        dfm_log_error("cannot load the tokenizer: %s", dfm_errmsg());
        goto out;
    }
    if (!to.tokens_only && dfm_umt5_load(&enc, encdir ? encdir : model, &uo)) {
        dfm_log_error("cannot load the text encoder: %s", dfm_errmsg());
        goto out;
    }
    if (dfm_text_encoder_new(&te, &to, tok, enc)) {
        dfm_log_error("%s", dfm_errmsg());
        goto out;
    }
    status = dfm_stream_map(&mo, argv + optind, argc - optind, map, te, &counts);
out:;
    char extra[64] = "";
    if (te) snprintf(extra, sizeof extra, "%llu repeated captions reused",
                     (unsigned long long)dfm_text_encoder_hits(te));
    dfm_text_encoder_free(te);
    dfm_umt5_free(enc);
    dfm_tokenizer_free(tok);
    dfm_summary(&counts, extra);
    return status;
}
