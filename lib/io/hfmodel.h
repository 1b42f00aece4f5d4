/* hfmodel.h — Hugging Face model directories and their config.json.
 *
 * A model argument is either a diffusers root (model_index.json naming components, each in its
 * own sub-directory: vae/, transformer/, text_encoder/, tokenizer/) or a single component
 * directory (config.json + weights). dfm_hf_component() finds the directory of one component,
 * with errors that say what was looked for and what was found. Config fields are read with
 * typed getters whose errors name the file, the field and the expected type.
 */
#ifndef DFM_IO_HFMODEL_H
#define DFM_IO_HFMODEL_H
#include <stdint.h>

typedef struct cJSON cJSON;

/* The directory of `component` ("vae", "transformer", ...) under `model`: model/component when
 * model has model_index.json listing it (or simply has that sub-directory with a config.json),
 * else model itself when it has a config.json whose "_class_name" is one of `classes`
 * (NULL-terminated; NULL accepts any). *out is malloc'd. */
int dfm_hf_component(const char *model, const char *component, const char *const *classes,
                     char **out);

typedef struct {
    char *path; /* the config.json path, for messages */
    cJSON *json;
} dfm_hf_config;

int dfm_hf_config_load(dfm_hf_config *c, const char *component_dir);
void dfm_hf_config_free(dfm_hf_config *c);
/* Getters: a missing field takes `def` when required == 0, else is an error; a field of the
 * wrong type is always an error. */
int dfm_hf_int(const dfm_hf_config *c, const char *key, int required, int64_t def, int64_t *out);
int dfm_hf_float(const dfm_hf_config *c, const char *key, int required, double def, double *out);
int dfm_hf_bool(const dfm_hf_config *c, const char *key, int required, int def, int *out);
int dfm_hf_str(const dfm_hf_config *c, const char *key, int required, const char *def,
               const char **out); /* valid UTF-8 or DFM_E_FORMAT */
/* Arrays of numbers / bools: *n gets the length (up to max); a missing optional array gives n=0. */
int dfm_hf_float_array(const dfm_hf_config *c, const char *key, int required, double *out, int max, int *n);
int dfm_hf_int_array(const dfm_hf_config *c, const char *key, int required, int64_t *out, int max, int *n);
int dfm_hf_bool_array(const dfm_hf_config *c, const char *key, int required, int *out, int max, int *n);

/* Sizes: every size a model loader reads from a config goes through these. The value is checked
 * against [min, max] in int64 before the caller narrows it (to int) or multiplies it, so a
 * 4294967297 never becomes 1 and a 2147483647 never overflows a product; out of range is
 * DFM_E_FORMAT naming the file, the field, the value and the range. The default of a missing
 * optional field is checked too (it may come from another field). Pick max so that the products
 * the model forms from these values fit in int, and let the weights file decide the rest: check
 * each tensor's shape in its header before allocating anything for it (dfm_st_check). */
int dfm_hf_int_range(const dfm_hf_config *c, const char *key, int required, int64_t def, int64_t min,
                     int64_t max, int64_t *out);
int dfm_hf_int_array_range(const dfm_hf_config *c, const char *key, int required, int64_t min, int64_t max,
                           int64_t *out, int max_n, int *n);

#endif
