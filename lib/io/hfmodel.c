/* hfmodel.c — Hugging Face model directories (hfmodel.h): find a component's directory, load its
 * config.json and read fields with typed getters.
 *
 * A component directory is recognised by its config file: config.json (diffusers models,
 * transformers models), or for the components without one, tokenizer_config.json / tokenizer.json
 * (tokenizers) and scheduler_config.json (schedulers). Its class is "_class_name" (diffusers),
 * else the first of "architectures" (transformers), else "tokenizer_class" (tokenizers).
 * Getters accept JSON numbers that are whole (16.0) as integers, and treat null like a missing
 * field (HF configs write null for "not set"). The _range getters bound sizes in int64 before
 * any caller narrows or multiplies them.
 *
 * Not here: the weights (safetensors.c), what the fields mean (models/), downloading.
 */
#include "io/hfmodel.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CONFIG (16u << 20) /* configs are a few kB; an index or vocab is not a config */

static const char *const CONFIG_FILES[] = {"config.json", "tokenizer_config.json", "tokenizer.json",
                                           "scheduler_config.json"};
#define N_CONFIG_FILES ((int)(sizeof CONFIG_FILES / sizeof CONFIG_FILES[0]))

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a);
    while (n > 1 && a[n - 1] == '/') n--;
    const char *sep = n && a[n - 1] == '/' ? "" : "/";
    size_t len = n + strlen(sep) + strlen(b) + 1;
    char *p = dfm_malloc(len);
    if (p) snprintf(p, len, "%.*s%s%s", (int)n, a, sep, b);
    return p;
}

static int is_file(const char *dir, const char *name)
{
    char *p = join(dir, name);
    struct stat s;
    int ok = p && stat(p, &s) == 0 && S_ISREG(s.st_mode);
    free(p);
    return ok;
}

static int is_dir(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

/* The first config file present in dir, or NULL. */
static const char *config_file(const char *dir)
{
    for (int i = 0; i < N_CONFIG_FILES; i++)
        if (is_file(dir, CONFIG_FILES[i])) return CONFIG_FILES[i];
    return NULL;
}

/* Parse dir/name (an object) into *out; errors name the file. */
static int load_json(const char *dir, const char *name, cJSON **out, char **path_out)
{
    *out = NULL;
    char *path = join(dir, name);
    if (!path) return DFM_E_NOMEM;
    dfm_buf b = {0};
    int rc = dfm_read_file(path, MAX_CONFIG, &b);
    if (rc) {
        free(path);
        return rc;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)b.data, b.len, &end, 0);
    if (!j) {
        size_t at = end ? (size_t)(end - (const char *)b.data) : 0, line = 1;
        for (size_t i = 0; i < at && i < b.len; i++) line += b.data[i] == '\n';
        rc = dfm_fail(DFM_E_FORMAT, "%s: not valid JSON (line %zu)", path, line);
    } else if (!cJSON_IsObject(j)) {
        rc = dfm_fail(DFM_E_FORMAT, "%s: not a JSON object", path);
        cJSON_Delete(j);
        j = NULL;
    }
    dfm_buf_free(&b);
    if (!rc) *out = j;
    if (!rc && path_out) *path_out = path;
    else free(path);
    return rc;
}

/* The class a component directory declares, from its config file; NULL if none. Points into j. */
static const char *class_of(const cJSON *j, char *what, size_t cap)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "_class_name");
    if (cJSON_IsString(c)) {
        snprintf(what, cap, "_class_name");
        return c->valuestring;
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    if (cJSON_IsArray(a) && cJSON_IsString(a->child)) {
        snprintf(what, cap, "architectures");
        return a->child->valuestring;
    }
    c = cJSON_GetObjectItemCaseSensitive(j, "tokenizer_class");
    if (cJSON_IsString(c)) {
        snprintf(what, cap, "tokenizer_class");
        return c->valuestring;
    }
    snprintf(what, cap, "_class_name");
    return NULL;
}

static int class_ok(const cJSON *j, const char *const *classes)
{
    if (!classes) return 1;
    char what[32];
    const char *c = class_of(j, what, sizeof what);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures");
    for (int i = 0; classes[i]; i++) {
        if (c && !strcmp(c, classes[i])) return 1;
        const cJSON *x;
        if (cJSON_IsArray(a))
            cJSON_ArrayForEach(x, a) if (cJSON_IsString(x) && !strcmp(x->valuestring, classes[i])) return 1;
    }
    return 0;
}

static void list_classes(dfm_buf *b, const char *const *classes)
{
    for (int i = 0; classes && classes[i]; i++)
        dfm_buf_printf(b, "%s%s", i ? (classes[i + 1] ? ", " : " or ") : "", classes[i]);
}

/* Is `name` a component that model_index.json lists (a value like ["diffusers", "Class"] and
 * not [null, null])? Names beginning with '_' are metadata. */
static int index_lists(const cJSON *idx, const char *name)
{
    if (!idx || name[0] == '_') return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(idx, name);
    if (!cJSON_IsArray(v)) return 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, v) if (!cJSON_IsNull(x)) return 1;
    return 0;
}

int dfm_hf_component(const char *model, const char *component, const char *const *classes,
                     char **out)
{
    *out = NULL;
    if (!model || !*model) return dfm_fail(DFM_E_ARG, "no model directory given");
    struct stat s;
    if (stat(model, &s) != 0)
        return dfm_fail(DFM_E_IO, "model '%s': %s", model, strerror(errno));
    if (!S_ISDIR(s.st_mode))
        return dfm_fail(DFM_E_ARG, "model '%s' is not a directory (expected a Hugging Face model directory)",
                        model);

    int rc = 0;
    cJSON *idx = NULL;
    int has_index = is_file(model, "model_index.json");
    if (has_index && (rc = load_json(model, "model_index.json", &idx, NULL))) return rc;
    char *sub = join(model, component);
    if (!sub) {
        cJSON_Delete(idx);
        return DFM_E_NOMEM;
    }
    const char *sub_cfg = is_dir(sub) ? config_file(sub) : NULL;

    /* 1. a diffusers root listing the component: its directory must be there */
    if (index_lists(idx, component)) {
        cJSON_Delete(idx);
        if (sub_cfg) {
            *out = sub;
            return 0;
        }
        rc = dfm_fail(DFM_E_FORMAT, "'%s/model_index.json' lists a '%s' component, but %s %s",
                      model, component, is_dir(sub) ? "there is no config.json in" : "there is no directory",
                      sub);
        free(sub);
        return rc;
    }
    /* 2. a root (or a partial copy of one) with the component's directory */
    if (sub_cfg) {
        cJSON_Delete(idx);
        *out = sub;
        return 0;
    }
    /* 3. the component's own directory */
    dfm_buf why = {0};
    cJSON *cfg = NULL;
    const char *own = config_file(model);
    if (own) {
        rc = load_json(model, own, &cfg, NULL);
        if (rc) {
            cJSON_Delete(idx);
            free(sub);
            return rc;
        }
        if (class_ok(cfg, classes)) {
            cJSON_Delete(cfg);
            cJSON_Delete(idx);
            free(sub);
            *out = dfm_strdup(model);
            return *out ? 0 : DFM_E_NOMEM;
        }
    }
    /* not found: say what we looked for */
    dfm_buf_printf(&why, "'%s' is not a diffusers model with a '%s' component (", model, component);
    if (idx) {
        dfm_buf_printf(&why, "%s/model_index.json lists ", model);
        int k = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, idx) if (index_lists(idx, x->string))
            dfm_buf_printf(&why, "%s%s", k++ ? ", " : "", x->string);
        if (!k) dfm_buf_printf(&why, "no components");
        dfm_buf_printf(&why, ", no %s/config.json", sub);
    } else {
        dfm_buf_printf(&why, "no %s/model_index.json, no %s/config.json", model, sub);
    }
    dfm_buf_printf(&why, ") nor a %s directory (", component);
    if (!cfg) {
        dfm_buf_printf(&why, "no %s/config.json", model);
    } else {
        char what[32];
        const char *c = class_of(cfg, what, sizeof what);
        if (c) dfm_buf_printf(&why, "%s/%s has %s '%s', expected ", model, own, what, c);
        else dfm_buf_printf(&why, "%s/%s has no _class_name, expected ", model, own);
        list_classes(&why, classes);
    }
    dfm_buf_printf(&why, ")");
    rc = dfm_fail(DFM_E_ARG, "%s", why.data ? (const char *)why.data : "model not found");
    dfm_buf_free(&why);
    cJSON_Delete(cfg);
    cJSON_Delete(idx);
    free(sub);
    return rc;
}

/* ---- config.json ---------------------------------------------------------------------------- */

int dfm_hf_config_load(dfm_hf_config *c, const char *component_dir)
{
    c->path = NULL;
    c->json = NULL;
    return load_json(component_dir, "config.json", &c->json, &c->path);
}

void dfm_hf_config_free(dfm_hf_config *c)
{
    if (!c) return;
    cJSON_Delete(c->json);
    free(c->path);
    c->json = NULL;
    c->path = NULL;
}

static const char *kind(const cJSON *j)
{
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid JSON";
}

/* The field, or NULL when missing or null. Returns nonzero (an error, already recorded) when it
 * is missing and required. */
static int field(const dfm_hf_config *c, const char *key, int required, const char *type,
                 const cJSON **out)
{
    const cJSON *v = c->json ? cJSON_GetObjectItemCaseSensitive(c->json, key) : NULL;
    if (cJSON_IsNull(v)) v = NULL;
    *out = v;
    if (v || !required) return 0;
    const char *path = c->path ? c->path : "config.json";
    if (c->json && cJSON_GetObjectItemCaseSensitive(c->json, key))
        return dfm_fail(DFM_E_FORMAT, "%s: field '%s' is null, expected %s", path, key, type);
    return dfm_fail(DFM_E_FORMAT, "%s: missing field '%s' (%s)", path, key, type);
}

static int type_error(const dfm_hf_config *c, const char *key, const char *type, const cJSON *v)
{
    if (cJSON_IsNumber(v))
        return dfm_fail(DFM_E_FORMAT, "%s: field '%s' must be %s, not %.17g",
                        c->path ? c->path : "config.json", key, type, v->valuedouble);
    return dfm_fail(DFM_E_FORMAT, "%s: field '%s' must be %s, not %s", c->path ? c->path : "config.json",
                    key, type, kind(v));
}

/* A whole number within int64 (16 and 16.0 both are). */
static int as_int(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d)) return -1;
    *out = (int64_t)d;
    return 0;
}

int dfm_hf_int(const dfm_hf_config *c, const char *key, int required, int64_t def, int64_t *out)
{
    const cJSON *v;
    int rc = field(c, key, required, "an integer", &v);
    if (rc) return rc;
    if (!v) {
        *out = def;
        return 0;
    }
    if (as_int(v, out)) return type_error(c, key, "an integer", v);
    return 0;
}

int dfm_hf_float(const dfm_hf_config *c, const char *key, int required, double def, double *out)
{
    const cJSON *v;
    int rc = field(c, key, required, "a number", &v);
    if (rc) return rc;
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return type_error(c, key, "a number", v);
    *out = v->valuedouble;
    return 0;
}

int dfm_hf_bool(const dfm_hf_config *c, const char *key, int required, int def, int *out)
{
    const cJSON *v;
    int rc = field(c, key, required, "true or false", &v);
    if (rc) return rc;
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v)) return type_error(c, key, "true or false", v);
    *out = cJSON_IsTrue(v);
    return 0;
}

int dfm_hf_str(const dfm_hf_config *c, const char *key, int required, const char *def, const char **out)
{
    const cJSON *v;
    int rc = field(c, key, required, "a string", &v);
    if (rc) return rc;
    if (!v) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring) return type_error(c, key, "a string", v);
    if (!dfm_utf8_valid(v->valuestring, strlen(v->valuestring)))
        return dfm_fail(DFM_E_FORMAT, "%s: field '%s' is not valid UTF-8", c->path ? c->path : "config.json", key);
    *out = v->valuestring;
    return 0;
}

/* The array field (NULL when missing/null and optional), its length checked against max. */
static int array_field(const dfm_hf_config *c, const char *key, int required, const char *type,
                       int max, int *n, const cJSON **out)
{
    *n = 0;
    char what[64];
    snprintf(what, sizeof what, "an array of %s", type);
    int rc = field(c, key, required, what, out);
    if (rc || !*out) return rc;
    if (!cJSON_IsArray(*out)) return type_error(c, key, what, *out);
    int len = cJSON_GetArraySize(*out);
    if (len > max)
        return dfm_fail(DFM_E_FORMAT, "%s: field '%s' has %d elements, more than the %d expected",
                        c->path ? c->path : "config.json", key, len, max);
    return 0;
}

static int element_error(const dfm_hf_config *c, const char *key, int i, const char *type,
                         const cJSON *x)
{
    const char *path = c->path ? c->path : "config.json";
    if (cJSON_IsNumber(x))
        return dfm_fail(DFM_E_FORMAT, "%s: field '%s' element %d must be %s, not %.17g", path, key,
                        i, type, x->valuedouble);
    return dfm_fail(DFM_E_FORMAT, "%s: field '%s' element %d must be %s, not %s", path, key, i,
                    type, kind(x));
}

int dfm_hf_float_array(const dfm_hf_config *c, const char *key, int required, double *out, int max,
                       int *n)
{
    const cJSON *a, *x;
    int rc = array_field(c, key, required, "numbers", max, n, &a);
    if (rc || !a) return rc;
    int i = 0;
    cJSON_ArrayForEach(x, a)
    {
        if (!cJSON_IsNumber(x)) return element_error(c, key, i, "a number", x);
        out[i++] = x->valuedouble;
    }
    *n = i;
    return 0;
}

int dfm_hf_int_array(const dfm_hf_config *c, const char *key, int required, int64_t *out, int max,
                     int *n)
{
    const cJSON *a, *x;
    int rc = array_field(c, key, required, "integers", max, n, &a);
    if (rc || !a) return rc;
    int i = 0;
    cJSON_ArrayForEach(x, a)
    {
        if (as_int(x, &out[i])) return element_error(c, key, i, "an integer", x);
        i++;
    }
    *n = i;
    return 0;
}

int dfm_hf_bool_array(const dfm_hf_config *c, const char *key, int required, int *out, int max, int *n)
{
    const cJSON *a, *x;
    int rc = array_field(c, key, required, "booleans", max, n, &a);
    if (rc || !a) return rc;
    int i = 0;
    cJSON_ArrayForEach(x, a)
    {
        if (!cJSON_IsBool(x)) return element_error(c, key, i, "true or false", x);
        out[i++] = cJSON_IsTrue(x);
    }
    *n = i;
    return 0;
}

static int range_error(const dfm_hf_config *c, const char *key, int i, int64_t v, int64_t min, int64_t max)
{
    const char *path = c->path ? c->path : "config.json";
    char el[32] = "";
    if (i >= 0) snprintf(el, sizeof el, " element %d", i);
    return dfm_fail(DFM_E_FORMAT, "%s: field '%s'%s is %lld, outside the supported range [%lld, %lld]", path,
                    key, el, (long long)v, (long long)min, (long long)max);
}

int dfm_hf_int_range(const dfm_hf_config *c, const char *key, int required, int64_t def, int64_t min,
                     int64_t max, int64_t *out)
{
    int64_t v;
    int rc = dfm_hf_int(c, key, required, def, &v);
    if (rc) return rc;
    if (v < min || v > max) return range_error(c, key, -1, v, min, max);
    *out = v;
    return 0;
}

int dfm_hf_int_array_range(const dfm_hf_config *c, const char *key, int required, int64_t min, int64_t max,
                           int64_t *out, int max_n, int *n)
{
    int rc = dfm_hf_int_array(c, key, required, out, max_n, n);
    if (rc) {
        *n = 0;
        return rc;
    }
    for (int i = 0; i < *n; i++)
        if (out[i] < min || out[i] > max) {
            rc = range_error(c, key, i, out[i], min, max);
            *n = 0;
            return rc;
        }
    return 0;
}
