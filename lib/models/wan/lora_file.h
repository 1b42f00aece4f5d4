/* lora_file.h — a Wan 2.1 LoRA adapter file read without a model: every tensor name split into a
 * module and a part (A, B, alpha), the file's naming family, each module's diffusers name, its A/B
 * pair, rank and alpha; and PEFT's adapter_config.json text. What loading into a model
 * (models/wan/lora.h) and converting between families (models/wan/lora_convert.h) share.
 *
 * Naming families (reference/training.md 1), decided once per file:
 *   DFM_WAN_LORA_DIFFUSERS  diffusers module names ("blocks.0.attn1.to_q"), bare (PEFT's raw state
 *                           dict), under "transformer." (diffusers' pytorch_lora_weights) or
 *                           "base_model.model.[transformer.]" (a PEFT model's save);
 *   DFM_WAN_LORA_ORIGINAL   original Wan module names ("blocks.0.self_attn.q") under
 *                           "diffusion_model." (diffusion-pipe, ComfyUI), "model.diffusion_model."
 *                           or none;
 *   DFM_WAN_LORA_KOHYA      "lora_unet_" + the original module name with '.' -> '_' (musubi-tuner,
 *                           kohya; the diffusers name flattened is read too).
 * A/B are ".lora_A.weight"/".lora_B.weight" (or PEFT's ".lora_A.default.weight") or
 * ".lora_down.weight"/".lora_up.weight"; ".alpha" is a per-module scalar. One file has one family,
 * one prefix and one A/B spelling: a mix is an error naming two tensors that disagree.
 *
 * A module is a linear some Wan 2.1 transformer has, at any block index: in every block
 * attn1/attn2.{to_q,to_k,to_v,to_out.0}, attn2.add_{k,v}_proj (I2V), ffn.net.0.proj, ffn.net.2;
 * outside the blocks the condition embedder's linears (time, text, time_proj, image ff) and
 * proj_out. Whether a particular model has block 40 is the loader's question, not this file's.
 * A module's alpha comes from, in order: the caller, its ".alpha" tensor, the diffusers header
 * metadata (lora_adapter_metadata: transformer.lora_alpha, .alpha_pattern, .use_rslora), the
 * adapter_config.json beside an adapter_model.safetensors (lora_alpha, alpha_pattern,
 * use_rslora), else alpha = rank (the scale is folded into B, as diffusion-pipe and ComfyUI
 * assume). alpha_pattern keys must be plain module names (PEFT's suffix rule); a regular
 * expression is refused.
 *
 * Not here: the model (lora.h), writing safetensors in a family (lora_convert.h), DoRA, LoRA
 * biases, full-weight differences, LoKr/LoHa (each refused naming the tensor).
 * ref: diffusers loaders/lora_conversion_utils.py _convert_non_diffusers_wan_lora_to_diffusers,
 *      _convert_musubi_wan_lora_to_diffusers; peft utils/other.py get_pattern_key,
 *      tuners/lora/config.py LoraConfig, tuners/lora/layer.py (scaling = alpha / r or / sqrt(r))
 */
#ifndef DFM_MODELS_WAN_LORA_FILE_H
#define DFM_MODELS_WAN_LORA_FILE_H
#include "base/buf.h"
#include "io/safetensors.h"

enum { DFM_WAN_LORA_A, DFM_WAN_LORA_B, DFM_WAN_LORA_ALPHA };
enum { DFM_WAN_LORA_DIFFUSERS, DFM_WAN_LORA_ORIGINAL, DFM_WAN_LORA_KOHYA };
/* where a module's alpha came from */
enum { DFM_WAN_LORA_ALPHA_CALLER, DFM_WAN_LORA_ALPHA_TENSOR, DFM_WAN_LORA_ALPHA_METADATA, DFM_WAN_LORA_ALPHA_CONFIG,
       DFM_WAN_LORA_ALPHA_NONE };

/* One tensor name, split. */
typedef struct {
    int part;           /* DFM_WAN_LORA_A, _B or _ALPHA */
    const char *prefix; /* the prefix stripped (a static string: "diffusion_model.", "transformer.", ...)
                           or NULL; never set for lora_unet_ names */
    const char *style;  /* static: "lora_A/lora_B" or "lora_down/lora_up"; NULL for .alpha */
    char *fmod;         /* malloc'd: the module as the file spells it, prefix stripped
                           ("blocks.0.self_attn.q", "lora_unet_blocks_0_self_attn_q") */
} dfm_wan_lora_key;

/* Split tensor `name` of `file` (for messages) into k. Errors (DFM_E_UNSUPPORTED) name the
 * tensor and say what it is when we know (a LoRA bias, a .diff, DoRA, LoHa/LoKr). */
int dfm_wan_lora_split_key(const char *file, const char *name, dfm_wan_lora_key *k);

/* The diffusers module name (*out, malloc'd) of module `fmod` read in `family`. DFM_E_FORMAT
 * when it is not a linear of the Wan transformer (message: "module '<fmod>' [(diffusers
 * '<name>')] is not a linear of the Wan 2.1 transformer"), DFM_E_UNSUPPORTED for
 * patch_embedding (a Conv3d). */
int dfm_wan_lora_module_name(int family, const char *fmod, char **out);

/* 1 when `name` (diffusers, no .weight) is one of the linears above. */
int dfm_wan_lora_known_module(const char *name);
/* The block of diffusers module `name` ("blocks.12.attn1.to_q" -> 12), or -1 outside the blocks. */
int dfm_wan_lora_block_of(const char *name);

typedef struct {
    char *module;                         /* diffusers module name (malloc'd) */
    char *fmod;                           /* the file's spelling, prefix stripped (malloc'd) */
    const dfm_st_tensor *a, *b, *alpha;   /* alpha: the .alpha tensor or NULL */
    int rank;                             /* a: [rank, in], b: [out, rank] */
    double alpha_v;                       /* > 0, finite */
    int alpha_src;                        /* DFM_WAN_LORA_ALPHA_* */
    int rslora;                           /* scale = alpha / sqrt(rank) */
    double scale;                         /* alpha / rank, or alpha / sqrt(rank) */
} dfm_wan_lora_module;

typedef struct {
    dfm_st *st;
    char *file;             /* the weights file read (malloc'd) */
    char *config;           /* adapter_config.json beside it, or NULL (malloc'd) */
    int family;             /* DFM_WAN_LORA_* */
    const char *prefix;     /* the one prefix of every tensor, or NULL */
    const char *style;      /* "lora_A/lora_B" or "lora_down/lora_up" */
    char naming[160];       /* "original Wan names (diffusion-pipe / ComfyUI), prefix 'diffusion_model.', lora_A/lora_B" */
    char alpha_from[96];    /* "the caller", "per-module .alpha tensors", "adapter_config.json",
                               "lora_adapter_metadata", "none in the file (alpha = rank)", "mixed sources" */
    int metadata_trap;      /* the header has lora_adapter_metadata without transformer.* keys
                               (diffusers then builds a default config: training.md 1) */
    int n;
    dfm_wan_lora_module *mods; /* in the order of their first tensor (tensors sorted by name) */
} dfm_wan_lora_file;

/* Read the adapter at `path`: a .safetensors file, or a directory holding
 * adapter_model.safetensors (+ adapter_config.json) or pytorch_lora_weights.safetensors.
 * alpha > 0: every module's alpha, whatever the file says; 0: from the file as above.
 * Checks: every tensor is part of a LoRA on a known linear, one family / prefix / spelling,
 * no part twice, A and B both present, F32/BF16/F16 2-D with agreeing ranks, alpha one
 * positive finite float. Errors name the tensor and how the names were read. Values are not
 * read (dfm_st_read them; the file stays mapped until dfm_wan_lora_file_close). */
int dfm_wan_lora_file_open(dfm_wan_lora_file **f, const char *path, float alpha);
void dfm_wan_lora_file_close(dfm_wan_lora_file *f);

/* adapter_config.json as PEFT 0.21.2's LoraConfig.save_pretrained writes it (json.dumps,
 * indent 2, sorted keys) for LoraConfig(r, lora_alpha = r, lora_dropout, bias "none",
 * target_modules = names): names sorted (strcmp) by the caller, ranks[i] the rank of names[i];
 * r is the most common rank (the smallest of equals), the others listed in rank_pattern and
 * alpha_pattern (alpha = rank: the scale is folded into B). Appended to b. */
int dfm_wan_lora_config_json(dfm_buf *b, const char *const *names, const int *ranks, int n, float dropout);

#endif
