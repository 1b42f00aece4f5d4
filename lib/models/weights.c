/* weights.c — a model's weights by canonical name, over mapped safetensors files (weights.h).
 *
 * At open every file name is read once: a listed prefix is stripped, and when any stripped name
 * holds one of the table's markers of the other family, every name is converted by the table's
 * renames (Python's str.replace in order, the way diffusers' convert scripts do it). The
 * entries are then sorted by canonical name for lookups; each keeps its file name for messages
 * and a used flag for dfm_weights_finish. Loading reads through dfm_st_read (exact conversions
 * between F32, BF16 and F16, misaligned data included) or hands out a view of the mapping.
 * ref: diffusers scripts/convert_wan_to_diffusers.py (convert_transformer's rename loop),
 *      model_loading_utils.py load_model_dict_into_meta (keep_in_fp32_modules)
 *
 * Not here: the tables themselves (models/<family>/<model>_names.c), config.json, devices other than
 * through dfm_tensor_copy.
 */
#include "models/weights.h"
#include "base/buf.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    char *canon;             /* owned */
    const dfm_st_tensor *t;  /* its file name is t->name */
    int used;
} w_entry;

struct dfm_weights {
    const dfm_weight_names *names;
    dfm_st *st;
    char *where;             /* the file (or the path opened, for a sharded set): messages */
    char naming[256];
    int other;
    w_entry *e;
    int n;
    size_t owned, mapped;
};

#define DROP_MIN ((size_t)1 << 20) /* smaller tensors are not worth an madvise */

/* ---- names ----------------------------------------------------------------------------------- */

/* The prefix of `names` that `name` starts with (leaving something after it), or NULL. */
static const char *prefix_of(const dfm_weight_names *names, const char *name)
{
    for (const char *const *p = names->prefixes; p && *p; p++) {
        size_t n = strlen(*p);
        if (n && !strncmp(name, *p, n) && name[n]) return *p;
    }
    return NULL;
}

/* Python's s.replace(from, to) for every rename in order; '^from' only at the start. */
static char *apply_renames(const dfm_weight_rename *r, const char *name)
{
    char *cur = dfm_strdup(name);
    for (; cur && r && r->from; r++) {
        const char *from = r->from;
        int anchored = from[0] == '^';
        from += anchored;
        size_t fl = strlen(from), tl = strlen(r->to), len = strlen(cur), count = 0;
        if (!fl) continue;
        if (anchored) {
            count = !strncmp(cur, from, fl);
        } else {
            for (const char *p = strstr(cur, from); p; p = strstr(p + fl, from)) count++;
        }
        if (!count) continue;
        char *out = dfm_malloc(len - count * fl + count * tl + 1), *o = out;
        if (!out) {
            free(cur);
            return NULL;
        }
        const char *s = cur;
        for (size_t k = 0; k < count; k++) {
            const char *p = anchored ? cur : strstr(s, from);
            memcpy(o, s, (size_t)(p - s));
            o += p - s;
            memcpy(o, r->to, tl);
            o += tl;
            s = p + fl;
        }
        strcpy(o, s);
        free(cur);
        cur = out;
    }
    return cur;
}

int dfm_weights_convert_name(const dfm_weight_names *names, const char *file_name, int other, char **out)
{
    const char *p = prefix_of(names, file_name);
    const char *s = p ? file_name + strlen(p) : file_name;
    *out = other ? apply_renames(names->renames, s) : dfm_strdup(s);
    return *out ? 0 : DFM_E_NOMEM;
}

static int has_marker(const dfm_weight_names *names, const char *name)
{
    for (const char *const *m = names->other_markers; m && *m; m++)
        if (**m && strstr(name, *m)) return 1;
    return 0;
}

dfm_dtype dfm_weights_dtype_for(const dfm_weight_names *names, const char *name, dfm_dtype requested)
{
    if ((requested != DFM_BF16 && requested != DFM_F16) || !names || !names->keep_f32) return requested;
    for (const char *p = name; *p;) {
        const char *q = strchr(p, '.');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        for (const char *const *k = names->keep_f32; *k; k++)
            if (strlen(*k) == n && !strncmp(p, *k, n)) return DFM_F32;
        p += n + (q != NULL);
    }
    return requested;
}

static int ignored(const dfm_weight_names *names, const char *canon)
{
    for (const char *const *g = names->ignore; g && *g; g++) {
        size_t n = strlen(*g);
        if (n && (*g)[n - 1] == '.' ? !strncmp(canon, *g, n) : !strcmp(canon, *g)) return 1;
    }
    return 0;
}

static const char *alias_of(const dfm_weight_names *names, const char *name)
{
    for (const dfm_weight_alias *a = names->aliases; a && a->name; a++)
        if (!strcmp(a->name, name)) return a->alias;
    return NULL;
}

/* ---- open / close ------------------------------------------------------------------------------ */

static int by_canon(const void *a, const void *b)
{
    return strcmp(((const w_entry *)a)->canon, ((const w_entry *)b)->canon);
}

int dfm_weights_open(dfm_weights **out, const char *path, const dfm_weight_names *names)
{
    *out = NULL;
    dfm_weights *w = dfm_calloc(1, sizeof *w);
    if (!w) return DFM_E_NOMEM;
    w->names = names;
    int rc = dfm_st_open(&w->st, path);
    if (rc) {
        free(w);
        return rc;
    }
    int n = dfm_st_count(w->st);
    const char *seen_prefix = NULL, *file0 = n ? dfm_st_file(w->st, dfm_st_at(w->st, 0)) : NULL;
    int one_file = 1;
    for (int i = 0; i < n; i++) {
        const dfm_st_tensor *t = dfm_st_at(w->st, i);
        const char *p = prefix_of(names, t->name);
        if (p && !seen_prefix) seen_prefix = p;
        if (names->other && has_marker(names, p ? t->name + strlen(p) : t->name)) w->other = 1;
        if (dfm_st_file(w->st, t) != file0) one_file = 0;
    }
    w->where = dfm_strdup(n && one_file ? file0 : path);
    w->e = dfm_calloc((size_t)(n ? n : 1), sizeof *w->e);
    if (!w->where || !w->e) rc = DFM_E_NOMEM;
    for (int i = 0; i < n && !rc; i++) {
        w->e[i].t = dfm_st_at(w->st, i);
        rc = dfm_weights_convert_name(names, w->e[i].t->name, w->other, &w->e[i].canon);
        if (!rc) w->n = i + 1;
    }
    snprintf(w->naming, sizeof w->naming, "%s names%s%s%s", w->other ? names->other : names->canonical,
             seen_prefix ? ", prefix '" : "", seen_prefix ? seen_prefix : "", seen_prefix ? "' stripped" : "");
    if (!rc && w->n) qsort(w->e, (size_t)w->n, sizeof *w->e, by_canon);
    for (int i = 1; i < w->n && !rc; i++)
        if (!strcmp(w->e[i].canon, w->e[i - 1].canon))
            rc = dfm_fail(DFM_E_FORMAT, "'%s': tensors '%s' and '%s' are both '%s' (read as %s)", w->where,
                          w->e[i - 1].t->name, w->e[i].t->name, w->e[i].canon, w->naming);
    if (rc) {
        dfm_weights_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

void dfm_weights_close(dfm_weights *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].canon);
    free(w->e);
    free(w->where);
    dfm_st_close(w->st);
    free(w);
}

const char *dfm_weights_naming(const dfm_weights *w) { return w->naming; }
int dfm_weights_is_other(const dfm_weights *w) { return w->other; }
const dfm_st *dfm_weights_st(const dfm_weights *w) { return w->st; }
int dfm_weights_count(const dfm_weights *w) { return w->n; }

const char *dfm_weights_name_at(const dfm_weights *w, int i, const char **file_name)
{
    if (i < 0 || i >= w->n) return NULL;
    if (file_name) *file_name = w->e[i].t->name;
    return w->e[i].canon;
}

/* ---- finding ----------------------------------------------------------------------------------- */

static w_entry *lookup(const dfm_weights *w, const char *canon)
{
    int lo = 0, hi = w->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(w->e[mid].canon, canon);
        if (!c) return &w->e[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int dfm_weights_has(const dfm_weights *w, const char *name)
{
    const char *alias = alias_of(w->names, name);
    return lookup(w, name) || (alias && lookup(w, alias));
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < cap) snprintf(out + k, cap - k, "]");
}

/* " (in the file as 'x')" when the file spells the tensor otherwise, else "". */
static const char *file_alias(const w_entry *e, const char *name, char *buf, size_t cap)
{
    if (!strcmp(e->t->name, name)) return "";
    snprintf(buf, cap, " (in the file as '%s')", e->t->name);
    return buf;
}

static int not_found(const dfm_weights *w, const char *name, const char *alias)
{
    char also[300] = "";
    if (alias) snprintf(also, sizeof also, " (nor its alias '%s')", alias);
    /* a near miss by a prefix ("model.x" vs "x") is the usual cause */
    size_t b = strlen(name);
    for (int i = 0; i < w->n; i++) {
        const char *c = w->e[i].canon;
        size_t a = strlen(c);
        if ((a > b && c[a - b - 1] == '.' && !strcmp(c + a - b, name)) ||
            (b > a && name[b - a - 1] == '.' && !strcmp(name + b - a, c))) {
            char fa[300];
            return dfm_fail(DFM_E_FORMAT, "tensor '%s'%s not found in '%s' (read as %s; it has '%s'%s)", name,
                            also, w->where, w->naming, c, file_alias(&w->e[i], c, fa, sizeof fa));
        }
    }
    return dfm_fail(DFM_E_FORMAT, "tensor '%s'%s not found in '%s' (read as %s; %d tensors)", name, also, w->where,
                    w->naming, w->n);
}

static int is_float(dfm_dtype d) { return d == DFM_F32 || d == DFM_BF16 || d == DFM_F16; }

int dfm_weights_find(dfm_weights *w, const char *name, int ndim, const int64_t *shape, const dfm_st_tensor **out)
{
    *out = NULL;
    const char *alias = alias_of(w->names, name);
    w_entry *e = lookup(w, name), *twin = alias ? lookup(w, alias) : NULL;
    if (!e) e = twin, twin = NULL;
    if (!e) return not_found(w, name, alias);
    const dfm_st_tensor *t = e->t;
    char fa[300];
    const char *as = file_alias(e, name, fa, sizeof fa);
    if (!is_float(t->dtype))
        return dfm_fail(DFM_E_UNSUPPORTED, "tensor '%s'%s in '%s': dtype %s is not supported (F32, BF16, F16 are)",
                        name, as, dfm_st_file(w->st, t), dfm_st_dtype_name(t));
    int same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++) same = shape[i] == t->shape[i];
    if (!same) {
        char fs[200], ws[200];
        shape_str(fs, sizeof fs, t->ndim, t->shape);
        shape_str(ws, sizeof ws, ndim < 0 || ndim > DFM_ST_MAX_DIMS ? 0 : ndim, shape);
        return dfm_fail(DFM_E_FORMAT, "tensor '%s'%s in '%s': file has shape %s %s, expected %s", name, as,
                        dfm_st_file(w->st, t), fs, dfm_st_dtype_name(t), ws);
    }
    e->used = 1;
    if (twin) twin->used = 1; /* tied: the same tensor under its other name */
    *out = t;
    return 0;
}

/* ---- loading ----------------------------------------------------------------------------------- */

static void drop_pages(const dfm_st_tensor *t)
{
    if (t->nbytes <= DROP_MIN) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = (uintptr_t)t->data, e = a + t->nbytes;
    a = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    e &= ~((uintptr_t)pg - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

/* Round F32 values to bf16 in place (round to nearest even, as a bf16 cast does). */
static int round_bf16(float *x, size_t n)
{
    uint16_t tmp[2048];
    for (size_t i = 0; i < n; i += 2048) {
        size_t k = n - i < 2048 ? n - i : 2048;
        int rc = dfm_convert_floats(tmp, DFM_BF16, x + i, DFM_F32, k);
        if (!rc) rc = dfm_convert_floats(x + i, DFM_F32, tmp, DFM_BF16, k);
        if (rc) return rc;
    }
    return 0;
}

int dfm_weights_load(dfm_weights *w, const char *name, int ndim, const int64_t *shape, dfm_dtype dt,
                     dfm_device dev, int flags, dfm_tensor *out)
{
    memset(out, 0, sizeof *out);
    if (!is_float(dt)) return dfm_fail(DFM_E_ARG, "tensor '%s': cannot load as %s", name, dfm_dtype_name(dt));
    const dfm_st_tensor *t;
    int rc = dfm_weights_find(w, name, ndim, shape, &t);
    if (rc) return rc;
    dfm_dtype kd = dfm_weights_dtype_for(w->names, name, dt);
    int keep = dfm_weights_dtype_for(w->names, name, DFM_BF16) == DFM_F32; /* never rounded */
    if ((flags & DFM_WEIGHTS_ROUND_BF16) && kd == DFM_F32 && !keep) flags &= ~DFM_WEIGHTS_MAP;
    int aligned = (uintptr_t)t->data % dfm_dtype_size(t->dtype) == 0;
    if ((flags & DFM_WEIGHTS_MAP) && dev == DFM_CPU && aligned && (t->dtype == kd || (flags & DFM_WEIGHTS_MAP_ANY))) {
        *out = dfm_tensor_view((void *)t->data, t->dtype, DFM_CPU, ndim, shape);
        if (!(flags & DFM_WEIGHTS_SCRATCH)) w->mapped += t->nbytes;
        return 0;
    }
    dfm_tensor host;
    if ((rc = dfm_tensor_alloc(&host, kd, DFM_CPU, ndim, shape))) return rc;
    rc = dfm_st_read(w->st, t->name, kd, ndim, shape, host.data);
    if (!rc && (flags & DFM_WEIGHTS_ROUND_BF16) && kd == DFM_F32 && !keep)
        rc = round_bf16(host.data, (size_t)dfm_tensor_numel(&host));
    if (!rc) drop_pages(t);
    if (!rc && dev != DFM_CPU) {
        rc = dfm_tensor_copy(out, &host, dev);
        dfm_tensor_free(&host);
    } else if (!rc) {
        *out = host;
    } else {
        dfm_tensor_free(&host);
    }
    if (!rc && !(flags & DFM_WEIGHTS_SCRATCH)) w->owned += dfm_tensor_nbytes(out);
    return rc;
}

void dfm_weights_drop(dfm_weights *w, const char *name)
{
    const char *alias = alias_of(w->names, name);
    const w_entry *e = lookup(w, name);
    if (!e && alias) e = lookup(w, alias);
    if (e) drop_pages(e->t);
}

void dfm_weights_memory(const dfm_weights *w, size_t *owned, size_t *mapped)
{
    if (owned) *owned = w->owned;
    if (mapped) *mapped = w->mapped;
}

void dfm_weights_add_owned(dfm_weights *w, size_t bytes) { w->owned += bytes; }

int dfm_weights_finish(const dfm_weights *w, const char *note)
{
    const w_entry *first = NULL;
    int more = 0;
    for (int i = 0; i < w->n; i++) {
        const w_entry *e = &w->e[i];
        if (e->used || ignored(w->names, e->canon)) continue;
        if (!first) first = e;
        else more++;
    }
    if (!first) return 0;
    char fa[300], others[64] = "";
    if (more) snprintf(others, sizeof others, "; %d more unused tensor%s", more, more == 1 ? "" : "s");
    return dfm_fail(DFM_E_FORMAT, "tensor '%s'%s in '%s' is not part of the %s (%s%s%s%s)", first->canon,
                    file_alias(first, first->canon, fa, sizeof fa), dfm_st_file(w->st, first->t), w->names->model,
                    note ? note : "", note ? "; " : "", w->naming, others);
}
