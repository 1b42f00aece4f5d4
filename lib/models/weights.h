/* weights.h — a model's weights by their canonical names: one loader for every model family.
 *
 * Inside dfm a weight is named as the diffusers / transformers checkpoint names it (canonical).
 * A file may spell the names another way; each model has one name table (dfm_weight_names) that
 * says how to read the others:
 *   - prefixes stripped from the front of a file name (ComfyUI's "model.diffusion_model.");
 *   - another naming family (original Wan), recognized by marker substrings that only its names
 *     contain, and converted by ordered substring renames, each applied to every occurrence in
 *     turn, as diffusers' convert scripts do (str.replace in dict order); a rename whose `from`
 *     starts with '^' applies only at the start of the name;
 *   - aliases: a second name the same (tied) tensor may carry;
 *   - names the model does not use and that are not an error when left over (a full UMT5
 *     checkpoint's decoder);
 *   - module-name parts kept in F32 whatever the requested dtype (diffusers'
 *     _keep_in_fp32_modules: a parameter matches when one of its dot-separated parts equals an
 *     entry).
 * The family is decided once per file set at open, and every message says which was read.
 *
 * dfm_weights_open maps the files (io/safetensors.h: a component directory with its single or
 * sharded safetensors, an index.json, or one .safetensors file); tensors are then found by
 * canonical name, each checked against the shape the model expects before anything is
 * allocated for it, and loaded as owned copies (converted, optionally rounded to bf16, put on a
 * device) or used in place from the mapping. Every tensor found is marked used;
 * dfm_weights_finish reports the first one the model never asked for.
 *
 * Not here: what a tensor means (the model), config.json (io/hfmodel.h), pickled .pth files,
 * quantized dtypes (F8_*: refused with a message), LoRA files.
 */
#ifndef DFM_MODELS_WEIGHTS_H
#define DFM_MODELS_WEIGHTS_H
#include <stddef.h>
#include <stdint.h>
#include "io/safetensors.h"
#include "tensor/tensor.h"

typedef struct {
    const char *from, *to;
} dfm_weight_rename;

typedef struct {
    const char *name, *alias; /* canonical name, and the other name the same tensor may carry */
} dfm_weight_alias;

/* One model's name table. Every list is NULL-terminated (renames and aliases end with a
 * {NULL, NULL} entry); any list may be NULL. */
typedef struct {
    const char *model;                 /* "Wan 2.1 VAE": messages say "not part of the <model>" */
    const char *canonical;             /* the canonical family's name, "diffusers" */
    const char *const *prefixes;       /* stripped when a file name starts with one (first match) */
    const char *other;                 /* the other family's name ("original Wan"), or NULL */
    const char *const *other_markers;  /* substrings only the other family's names contain */
    const dfm_weight_rename *renames;  /* other -> canonical, applied in order */
    const dfm_weight_alias *aliases;
    const char *const *ignore;         /* canonical names, or prefixes when ending in '.' */
    const char *const *keep_f32;       /* module-name parts kept in F32 */
} dfm_weight_names;

typedef struct dfm_weights dfm_weights;

/* Open the weights at `path` (see io/safetensors.h dfm_st_open for the accepted forms) and read
 * every name through `names` (which must outlive *w): strip a prefix, convert when the file set
 * uses the other family, and refuse two file tensors that land on one canonical name. */
int dfm_weights_open(dfm_weights **w, const char *path, const dfm_weight_names *names);
void dfm_weights_close(dfm_weights *w);
/* How the names were read, for messages: "diffusers names", "original Wan names, prefix
 * 'model.diffusion_model.' stripped", ... Owned by w. */
const char *dfm_weights_naming(const dfm_weights *w);
/* 1 when the file set uses the table's other family. */
int dfm_weights_is_other(const dfm_weights *w);
/* The underlying set (file names, metadata); owned by w. */
const dfm_st *dfm_weights_st(const dfm_weights *w);
/* Number of tensors, and tensor i's canonical and file names (sorted by canonical name). */
int dfm_weights_count(const dfm_weights *w);
const char *dfm_weights_name_at(const dfm_weights *w, int i, const char **file_name);

/* 1 when `name` (or its alias) is in the file set; marks nothing. */
int dfm_weights_has(const dfm_weights *w, const char *name);
/* The tensor `name` (or, when absent, its alias) with exactly shape[0..ndim) and a float dtype
 * (F32, BF16, F16), marked used (with its tied alias when both exist). Errors (DFM_E_FORMAT;
 * DFM_E_UNSUPPORTED for a dtype dfm does not compute with) name the canonical name, the name in
 * the file when it differs, and the file: a missing tensor with a near miss when there is one
 * ("it has 'model.x.weight'"), a wrong shape with both shapes. *t points into w. */
int dfm_weights_find(dfm_weights *w, const char *name, int ndim, const int64_t *shape,
                     const dfm_st_tensor **t);

/* The dtype a tensor is kept in: F32 when `requested` is BF16 or F16 and one of the name's
 * dot-separated parts is in names->keep_f32; else `requested`.
 * ref: diffusers model_loading_utils.py load_model_dict_into_meta (keep_in_fp32_modules) */
dfm_dtype dfm_weights_dtype_for(const dfm_weight_names *names, const char *name, dfm_dtype requested);

enum {
    DFM_WEIGHTS_MAP = 1,         /* in place (a CPU view into the mapping) when dev is the CPU, the
                                    data is aligned for its dtype and that dtype is the one kept */
    DFM_WEIGHTS_MAP_ANY = 2,     /* with MAP: in place in the file's dtype even when it is not the
                                    one requested (the caller converts at use) */
    DFM_WEIGHTS_ROUND_BF16 = 4,  /* an F32 result holds bf16-rounded values (a BF16 run's small
                                    tensors): always a copy; keep-F32 tensors are never rounded */
    DFM_WEIGHTS_SCRATCH = 8,     /* a temporary the caller frees after use: not counted */
};

/* Tensor `name` with exactly shape[0..ndim) as dtype dfm_weights_dtype_for(names, name, dt)
 * (F32, BF16 or F16; converted from the file's float dtype) on device dev, found as
 * dfm_weights_find does. *out is a view into the mapping (DFM_WEIGHTS_MAP, see above: valid
 * while w is open; dfm_tensor_free on it frees nothing) or an owned copy (the file's pages of a
 * copied tensor over 1 MiB are dropped from this process afterwards: the file is read once).
 * Bytes are counted as mapped or owned (dfm_weights_memory). The shape is checked before
 * anything is allocated. */
int dfm_weights_load(dfm_weights *w, const char *name, int ndim, const int64_t *shape, dfm_dtype dt,
                     dfm_device dev, int flags, dfm_tensor *out);
/* Drop the mapped pages of tensor `name` (found before) from this process once the caller has
 * copied it elsewhere (a packed layout); nothing for tensors of 1 MiB or less. */
void dfm_weights_drop(dfm_weights *w, const char *name);
/* Weight bytes held: owned copies (host or device) and used in place from the mapping; the
 * caller adds what it builds from the tensors itself (a packed layout) with add_owned. */
void dfm_weights_memory(const dfm_weights *w, size_t *owned, size_t *mapped);
void dfm_weights_add_owned(dfm_weights *w, size_t bytes);

/* After a full load: 0 when every tensor in the files was found or is ignored by the table;
 * else DFM_E_FORMAT naming the first leftover (canonical and file name) and how many more there
 * are: "tensor 'x' in '<file>' is not part of the <model> (<note>)". note may be NULL. */
int dfm_weights_finish(const dfm_weights *w, const char *note);

/* The canonical name of file name `file_name` read as the table's other family (other = 1) or
 * as the canonical one (other = 0): prefix stripped, renames applied. *out is malloc'd. */
int dfm_weights_convert_name(const dfm_weight_names *names, const char *file_name, int other, char **out);

#endif
