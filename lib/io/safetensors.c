/* safetensors.c — safetensors files (safetensors.h): mmap reader for single files and sharded
 * sets, and an atomic writer whose files are byte-identical to the Python library's.
 *
 * Reading trusts nothing in the file. The header length must fit the file and the 100 MB limit
 * of the reference parser; the JSON must be one object (trailing spaces only); every entry needs
 * a known dtype string, a shape of at most DFM_ST_MAX_DIMS non-negative integers whose byte size
 * (checked for overflow) equals end - begin, and data_offsets inside the data area. Tensors may
 * not overlap or share a name. Unlike the reference parser we do not insist that the tensors
 * tile the data area without holes. Dtypes that dfm does not compute with (F64, I8, BOOL,
 * F8_*, ...) are listed with their bytes but dfm_st_read refuses them.
 * ref: huggingface/safetensors safetensors/src/tensor.rs (read_metadata, validate, prepare)
 *
 * Writing follows `prepare`: tensors sorted by dtype (widest first, in the Rust enum's order)
 * then by name, packed without gaps so each starts aligned to its element size; compact JSON
 * with "__metadata__" first; spaces pad the header to a multiple of 8.
 *
 * Not here: what the tensors mean (models/), device upload (tensor/), big-endian hosts.
 */
#include "io/safetensors.h"
#include "base/buf.h"
#include "base/error.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

#define MAX_HEADER 100000000u          /* MAX_HEADER_SIZE in tensor.rs */
#define MAX_INDEX (100u << 20)         /* an index.json larger than this is not an index */
#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: cJSON numbers are doubles */

/* Every dtype the format defines, with its size in bits; dfm computes with some of them. */
static const struct {
    const char *name;
    int bits;
    int ours; /* a dfm_dtype, or -1 */
} ST_DTYPES[] = {
    {"BOOL", 8, -1},         {"F4", 4, -1},           {"F6_E2M3", 6, -1},     {"F6_E3M2", 6, -1},
    {"U8", 8, DFM_U8},       {"I8", 8, -1},           {"F8_E5M2", 8, -1},     {"F8_E4M3", 8, -1},
    {"F8_E8M0", 8, -1},      {"F8_E4M3FNUZ", 8, -1},  {"F8_E5M2FNUZ", 8, -1}, {"I16", 16, -1},
    {"U16", 16, -1},         {"F16", 16, DFM_F16},    {"BF16", 16, DFM_BF16}, {"I32", 32, DFM_I32},
    {"U32", 32, -1},         {"F32", 32, DFM_F32},    {"C64", 64, -1},        {"F64", 64, -1},
    {"I64", 64, DFM_I64},    {"U64", 64, -1},
};
#define N_ST_DTYPES ((int)(sizeof ST_DTYPES / sizeof ST_DTYPES[0]))

typedef struct {
    dfm_st_tensor t; /* first: dfm_st_at hands out &entry->t */
    const char *dtype_name; /* as the file spells it (static storage) */
    int file;               /* index into dfm_st.files */
    uint64_t begin;         /* offset in the data area */
} st_entry;

typedef struct {
    char *path;
    uint8_t *map;
    size_t size;
    cJSON *header; /* owns the tensor names */
    char *metadata;
} st_file;

struct dfm_st {
    char *source; /* the file or index opened, for messages */
    st_file *files;
    int nfiles;
    st_entry *ents;
    int n, cap;
};

/* ---- small helpers --------------------------------------------------------------------- */

static const char *json_kind(const cJSON *j)
{
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

/* A JSON number that is a whole number in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= MAX_EXACT_INT) || v != (double)(uint64_t)v) return -1;
    *out = (uint64_t)v;
    return 0;
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < cap) snprintf(out + k, cap - k, "]");
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const char *sep = n && dir[n - 1] == '/' ? "" : "/";
    size_t len = n + 1 + strlen(name) + 1;
    char *p = dfm_malloc(len);
    if (p) snprintf(p, len, "%.*s%s%s", (int)n, dir, sep, name);
    return p;
}

static int is_regular(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* ---- parsing one file --------------------------------------------------------------------- */

static int add_entry(dfm_st *st, st_entry **out)
{
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 64;
        st_entry *p = dfm_realloc(st->ents, (size_t)cap * sizeof *p);
        if (!p) return DFM_E_NOMEM;
        st->ents = p;
        st->cap = cap;
    }
    *out = &st->ents[st->n++];
    memset(*out, 0, sizeof **out);
    return 0;
}

/* One header entry `e` named e->string of file f (index fi), data area of `data_size` bytes. */
static int parse_entry(dfm_st *st, int fi, const cJSON *e, uint64_t data_size)
{
    const st_file *f = &st->files[fi];
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return dfm_fail(DFM_E_FORMAT, "'%s': tensor '%s' is %s, not an object", f->path, name,
                        json_kind(e));
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt || !sh || !off)
        return dfm_fail(DFM_E_FORMAT, "'%s': tensor '%s' has no '%s'", f->path, name,
                        !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt) || !dt->valuestring)
        return dfm_fail(DFM_E_FORMAT, "'%s': tensor '%s': dtype is %s, not a string", f->path,
                        name, json_kind(dt));
    int k = 0;
    while (k < N_ST_DTYPES && strcmp(ST_DTYPES[k].name, dt->valuestring)) k++;
    if (k == N_ST_DTYPES)
        return dfm_fail(DFM_E_FORMAT, "'%s': tensor '%s': unknown dtype '%.32s'", f->path, name,
                        dt->valuestring);

    st_entry *en;
    int rc = add_entry(st, &en);
    if (rc) return rc;
    en->t.name = name;
    en->t.dtype = ST_DTYPES[k].ours >= 0 ? (dfm_dtype)ST_DTYPES[k].ours : DFM_ST_OTHER;
    en->dtype_name = ST_DTYPES[k].name;
    en->file = fi;

    if (!cJSON_IsArray(sh))
        return dfm_fail(DFM_E_FORMAT, "'%s': tensor '%s': shape is %s, not an array", f->path,
                        name, json_kind(sh));
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > DFM_ST_MAX_DIMS)
        return dfm_fail(DFM_E_UNSUPPORTED, "'%s': tensor '%s' has %d dimensions, at most %d supported",
                        f->path, name, ndim, DFM_ST_MAX_DIMS);
    en->t.ndim = ndim;
    uint64_t numel = 1;
    int overflow = 0, zero = 0;
    const cJSON *d;
    int i = 0;
    cJSON_ArrayForEach(d, sh)
    {
        uint64_t v;
        if (json_uint(d, &v))
            return dfm_fail(DFM_E_FORMAT,
                            "'%s': tensor '%s': shape entry %d is not a non-negative integer",
                            f->path, name, i);
        en->t.shape[i++] = (int64_t)v;
        if (!v) zero = 1;
        else if (numel > UINT64_MAX / v) overflow = 1;
        else numel *= v;
    }
    if (zero) overflow = 0, numel = 0; /* a zero dimension makes any product empty */
    uint64_t bits = (uint64_t)ST_DTYPES[k].bits;
    if (overflow || numel > UINT64_MAX / bits)
        return dfm_fail(DFM_E_FORMAT, "'%s': tensor '%s': shape is too large (size overflows)",
                        f->path, name);
    if (numel * bits % 8)
        return dfm_fail(DFM_E_FORMAT, "'%s': tensor '%s': %llu %s elements are not a whole number of bytes",
                        f->path, name, (unsigned long long)numel, ST_DTYPES[k].name);
    uint64_t nbytes = numel * bits / 8;

    uint64_t b, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(off->child, &b) ||
        json_uint(off->child->next, &end))
        return dfm_fail(DFM_E_FORMAT,
                        "'%s': tensor '%s': data_offsets must be [begin, end], two non-negative integers",
                        f->path, name);
    if (b > end || end > data_size)
        return dfm_fail(DFM_E_FORMAT,
                        "'%s': tensor '%s': data_offsets [%llu, %llu] are outside the data area of %llu bytes",
                        f->path, name, (unsigned long long)b, (unsigned long long)end,
                        (unsigned long long)data_size);
    if (end - b != nbytes) {
        char s[200];
        shape_str(s, sizeof s, ndim, en->t.shape);
        return dfm_fail(DFM_E_FORMAT,
                        "'%s': tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %s %s needs %llu",
                        f->path, name, (unsigned long long)b, (unsigned long long)end,
                        (unsigned long long)(end - b), s, ST_DTYPES[k].name,
                        (unsigned long long)nbytes);
    }
    en->begin = b;
    en->t.nbytes = (size_t)nbytes;
    en->t.data = f->map + (f->size - data_size) + b;
    return 0;
}

static int metadata_text(st_file *f, const cJSON *m)
{
    if (!cJSON_IsObject(m))
        return dfm_fail(DFM_E_FORMAT, "'%s': __metadata__ is %s, not an object", f->path,
                        json_kind(m));
    const cJSON *v;
    cJSON_ArrayForEach(v, m)
    {
        if (!cJSON_IsString(v))
            return dfm_fail(DFM_E_FORMAT, "'%s': __metadata__ field '%s' is %s, not a string",
                            f->path, v->string, json_kind(v));
    }
    f->metadata = cJSON_PrintUnformatted(m);
    return f->metadata ? 0 : dfm_fail(DFM_E_NOMEM, "out of memory");
}

/* Map file `path` as st->files[fi] (already holding path) and add its tensors. */
static int load_file(dfm_st *st, int fi)
{
    st_file *f = &st->files[fi];
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", f->path, strerror(errno));
    struct stat s;
    if (fstat(fd, &s) != 0 || !S_ISREG(s.st_mode)) {
        close(fd);
        return dfm_fail(DFM_E_IO, "'%s' is not a regular file", f->path);
    }
    if (s.st_size < 8) {
        close(fd);
        return dfm_fail(DFM_E_FORMAT, "'%s' is not a safetensors file: %lld bytes, too short", f->path,
                        (long long)s.st_size);
    }
    f->size = (size_t)s.st_size;
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return dfm_fail(DFM_E_IO, "cannot map '%s': %s", f->path, strerror(e));
    f->map = map;

    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f->map[i];
    if (hl > MAX_HEADER)
        return dfm_fail(DFM_E_FORMAT, "'%s': header length %llu is over the limit of %u bytes",
                        f->path, (unsigned long long)hl, MAX_HEADER);
    if (hl > f->size - 8)
        return dfm_fail(DFM_E_FORMAT, "'%s': header length %llu runs past the end of the file (%zu bytes)",
                        f->path, (unsigned long long)hl, f->size);
    if (hl < 2 || f->map[8] != '{')
        return dfm_fail(DFM_E_FORMAT, "'%s' is not a safetensors file: the header is not a JSON object",
                        f->path);
    /* Parse a NUL-padded copy: older cJSON versions may read a byte past the given length. */
    char *txt = dfm_malloc((size_t)hl + 16);
    if (!txt) return DFM_E_NOMEM;
    memcpy(txt, f->map + 8, (size_t)hl);
    memset(txt + hl, 0, 16);
    const char *end = NULL;
    f->header = cJSON_ParseWithLengthOpts(txt, (size_t)hl, &end, 0);
    size_t at = end && end >= txt ? (size_t)(end - txt) : 0;
    int trailing = 0;
    for (size_t i = at; f->header && i < hl; i++)
        if (!strchr(" \t\r\n", txt[i]) || !txt[i]) trailing = 1;
    free(txt);
    if (!f->header)
        return dfm_fail(DFM_E_FORMAT, "'%s': the header is not valid JSON (near byte %zu of %llu)",
                        f->path, at, (unsigned long long)hl);
    if (trailing)
        return dfm_fail(DFM_E_FORMAT, "'%s': the header has bytes after its JSON object (at byte %zu)",
                        f->path, at);
    if (!cJSON_IsObject(f->header))
        return dfm_fail(DFM_E_FORMAT, "'%s': the header is %s, not a JSON object", f->path,
                        json_kind(f->header));

    uint64_t data_size = f->size - 8 - hl;
    const cJSON *ent;
    cJSON_ArrayForEach(ent, f->header)
    {
        int rc;
        if (!strcmp(ent->string, "__metadata__")) {
            if (f->metadata)
                return dfm_fail(DFM_E_FORMAT, "'%s': __metadata__ appears twice", f->path);
            rc = metadata_text(f, ent);
        } else {
            rc = parse_entry(st, fi, ent, data_size);
        }
        if (rc) return rc;
    }
    return 0;
}

/* ---- the set: sort, duplicate and overlap checks ------------------------------------------ */

static int by_name(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->t.name, ((const st_entry *)b)->t.name);
}

static int by_file_offset(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->file != y->file) return x->file < y->file ? -1 : 1;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->t.nbytes < y->t.nbytes ? -1 : x->t.nbytes > y->t.nbytes;
}

static int check_set(dfm_st *st)
{
    if (st->n) qsort(st->ents, (size_t)st->n, sizeof *st->ents, by_name);
    for (int i = 1; i < st->n; i++)
        if (!strcmp(st->ents[i].t.name, st->ents[i - 1].t.name)) {
            const st_entry *a = &st->ents[i - 1], *b = &st->ents[i];
            if (a->file == b->file)
                return dfm_fail(DFM_E_FORMAT, "'%s': tensor '%s' appears twice",
                                st->files[a->file].path, a->t.name);
            return dfm_fail(DFM_E_FORMAT, "tensor '%s' is in both '%s' and '%s'", a->t.name,
                            st->files[a->file].path, st->files[b->file].path);
        }
    if (st->n < 2) return 0;
    const st_entry **ord = dfm_malloc((size_t)st->n * sizeof *ord);
    if (!ord) return DFM_E_NOMEM;
    for (int i = 0; i < st->n; i++) ord[i] = &st->ents[i];
    qsort(ord, (size_t)st->n, sizeof *ord, by_file_offset);
    int rc = 0;
    const st_entry *prev = NULL;
    for (int i = 0; i < st->n && !rc; i++) {
        const st_entry *e = ord[i];
        if (!e->t.nbytes) continue;
        if (prev && prev->file == e->file && e->begin < prev->begin + prev->t.nbytes)
            rc = dfm_fail(DFM_E_FORMAT, "'%s': tensors '%s' and '%s' overlap (bytes %llu..%llu and %llu..%llu)",
                          st->files[e->file].path, prev->t.name, e->t.name,
                          (unsigned long long)prev->begin,
                          (unsigned long long)(prev->begin + prev->t.nbytes),
                          (unsigned long long)e->begin,
                          (unsigned long long)(e->begin + e->t.nbytes));
        prev = e;
    }
    free(ord);
    return rc;
}

static int add_file(dfm_st *st, char *path_owned)
{
    st_file *p = dfm_realloc(st->files, (size_t)(st->nfiles + 1) * sizeof *p);
    if (!p) {
        free(path_owned);
        return DFM_E_NOMEM;
    }
    st->files = p;
    memset(&p[st->nfiles], 0, sizeof *p);
    p[st->nfiles++].path = path_owned;
    return load_file(st, st->nfiles - 1);
}

/* ---- sharded sets ------------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name from an index: a relative path that stays inside the index's directory. */
static int shard_name_ok(const char *s)
{
    if (!*s || *s == '/') return 0;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if ((n == 2 && !strncmp(p, "..", 2)) || n == 0) return 0;
        p += n + (q != NULL);
    }
    return 1;
}

static int open_index(dfm_st *st, const char *path)
{
    dfm_buf b = {0};
    int rc = dfm_read_file(path, MAX_INDEX, &b);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)b.data, b.len, &end, 0);
    size_t at = end ? (size_t)(end - (const char *)b.data) : 0;
    dfm_buf_free(&b);
    if (!j) return dfm_fail(DFM_E_FORMAT, "'%s' is not valid JSON (near byte %zu)", path, at);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(j) || !cJSON_IsObject(wm)) {
        cJSON_Delete(j);
        return dfm_fail(DFM_E_FORMAT, "'%s': no \"weight_map\" object: not a safetensors index", path);
    }
    /* distinct shard names, sorted */
    int nw = cJSON_GetArraySize(wm), ns = 0;
    const char **shards = dfm_malloc((size_t)(nw ? nw : 1) * sizeof *shards);
    if (!shards) {
        cJSON_Delete(j);
        return DFM_E_NOMEM;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm)
    {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            rc = dfm_fail(DFM_E_FORMAT, "'%s': weight_map entry '%s' must name a file beside the index",
                          path, e->string);
            goto out;
        }
        shards[ns++] = e->valuestring;
    }
    if (ns) qsort(shards, (size_t)ns, sizeof *shards, cmp_str);
    int nu = 0;
    for (int i = 0; i < ns; i++)
        if (!nu || strcmp(shards[nu - 1], shards[i])) shards[nu++] = shards[i];
    if (!nu) {
        rc = dfm_fail(DFM_E_FORMAT, "'%s': weight_map is empty", path);
        goto out;
    }
    const char *slash = strrchr(path, '/');
    char *dir = slash ? dfm_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
    if (slash && !dir) {
        rc = DFM_E_NOMEM;
        goto out;
    }
    for (int i = 0; i < nu && !rc; i++) { /* files[i] is shard shards[i] */
        char *p = dir ? path_join(dir, shards[i]) : dfm_strdup(shards[i]);
        rc = p ? add_file(st, p) : DFM_E_NOMEM;
    }
    free(dir);
    if (rc) goto out;
    rc = check_set(st);
    if (rc) goto out;
    /* every tensor the index names is in the shard it names */
    cJSON_ArrayForEach(e, wm)
    {
        const st_entry *t = (const st_entry *)dfm_st_find(st, e->string);
        if (!t || strcmp(shards[t->file], e->valuestring)) {
            rc = dfm_fail(DFM_E_FORMAT, "'%s' puts tensor '%s' in '%s', but %s", path, e->string,
                          e->valuestring, t ? "it is in another shard" : "that shard lacks it");
            break;
        }
    }
out:
    free(shards);
    cJSON_Delete(j);
    return rc;
}

/* ---- opening -------------------------------------------------------------------------------- */

static const char *const STANDARD_NAMES[] = {
    "model.safetensors", "model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json"};

/* The weights file inside directory `dir` (safetensors.h); *out is malloc'd. */
static int resolve_dir(const char *dir, char **out)
{
    char *found[4];
    int nf = 0;
    for (int i = 0; i < 4; i++) {
        char *p = path_join(dir, STANDARD_NAMES[i]);
        if (!p) {
            while (nf) free(found[--nf]);
            return DFM_E_NOMEM;
        }
        if (is_regular(p)) found[nf++] = p;
        else free(p);
    }
    if (nf == 1) {
        *out = found[0];
        return 0;
    }
    if (nf > 1) {
        int rc = dfm_fail(DFM_E_FORMAT, "'%s' holds both '%s' and '%s': pass the one to use", dir,
                          strrchr(found[0], '/') + 1, strrchr(found[1], '/') + 1);
        while (nf) free(found[--nf]);
        return rc;
    }
    DIR *d = opendir(dir);
    if (!d) return dfm_fail(DFM_E_IO, "cannot read directory '%s': %s", dir, strerror(errno));
    int nst = 0, nidx = 0;
    char first[2][256] = {"", ""}, idx[256] = "";
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        int is_st = ends_with(de->d_name, ".safetensors");
        int is_idx = ends_with(de->d_name, ".safetensors.index.json");
        if (!is_st && !is_idx) continue;
        char *p = path_join(dir, de->d_name);
        if (!p) {
            closedir(d);
            return DFM_E_NOMEM;
        }
        int reg = is_regular(p);
        free(p);
        if (!reg) continue;
        if (is_idx) {
            if (!nidx++) snprintf(idx, sizeof idx, "%s", de->d_name);
        } else {
            if (nst < 2) snprintf(first[nst], sizeof first[nst], "%s", de->d_name);
            nst++;
        }
    }
    closedir(d);
    if (nidx == 1) {
        *out = path_join(dir, idx);
        return *out ? 0 : DFM_E_NOMEM;
    }
    if (nidx == 0 && nst == 1) {
        *out = path_join(dir, first[0]);
        return *out ? 0 : DFM_E_NOMEM;
    }
    if (nidx > 1)
        return dfm_fail(DFM_E_FORMAT, "'%s' holds %d *.safetensors.index.json files: pass the one to use",
                        dir, nidx);
    if (nst > 1)
        return dfm_fail(DFM_E_FORMAT,
                        "'%s' holds %d .safetensors files ('%s', '%s', ...) and no index.json: pass one file",
                        dir, nst, first[0], first[1]);
    return dfm_fail(DFM_E_IO,
                    "no weights in '%s' (looked for model.safetensors, diffusion_pytorch_model.safetensors, "
                    "their .index.json, or a single *.safetensors file)",
                    dir);
}

int dfm_st_open(dfm_st **out, const char *path)
{
    *out = NULL;
    struct stat s;
    if (stat(path, &s) != 0) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", path, strerror(errno));
    char *file = NULL;
    int rc = 0;
    if (S_ISDIR(s.st_mode)) rc = resolve_dir(path, &file);
    else file = dfm_strdup(path);
    if (rc) return rc;
    if (!file) return DFM_E_NOMEM;
    dfm_st *st = dfm_calloc(1, sizeof *st);
    if (!st) {
        free(file);
        return DFM_E_NOMEM;
    }
    st->source = file;
    if (ends_with(file, ".json")) {
        rc = open_index(st, file);
    } else {
        char *p = dfm_strdup(file);
        rc = p ? add_file(st, p) : DFM_E_NOMEM;
        if (!rc) rc = check_set(st);
    }
    if (rc) {
        dfm_st_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void dfm_st_close(dfm_st *st)
{
    if (!st) return;
    for (int i = 0; i < st->nfiles; i++) {
        st_file *f = &st->files[i];
        if (f->map) munmap(f->map, f->size);
        cJSON_Delete(f->header);
        cJSON_free(f->metadata);
        free(f->path);
    }
    free(st->files);
    free(st->ents);
    free(st->source);
    free(st);
}

int dfm_st_count(const dfm_st *st) { return st->n; }

const dfm_st_tensor *dfm_st_at(const dfm_st *st, int i)
{
    return i >= 0 && i < st->n ? &st->ents[i].t : NULL;
}

const dfm_st_tensor *dfm_st_find(const dfm_st *st, const char *name)
{
    int lo = 0, hi = st->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(st->ents[mid].t.name, name);
        if (!c) return &st->ents[mid].t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *dfm_st_dtype_name(const dfm_st_tensor *t) { return ((const st_entry *)t)->dtype_name; }

const char *dfm_st_file(const dfm_st *st, const dfm_st_tensor *t)
{
    return st->files[((const st_entry *)t)->file].path;
}

const char *dfm_st_metadata(const dfm_st *st)
{
    for (int i = 0; i < st->nfiles; i++)
        if (st->files[i].metadata) return st->files[i].metadata;
    return "{}";
}

static int is_float(dfm_dtype t) { return t == DFM_F32 || t == DFM_BF16 || t == DFM_F16; }

int dfm_st_check(const dfm_st *st, const char *name, dfm_dtype want, int ndim, const int64_t *shape)
{
    const dfm_st_tensor *t = dfm_st_find(st, name);
    if (!t) {
        /* a near miss by a prefix ("model.x" vs "x") is the usual cause */
        for (int i = 0; i < st->n; i++) {
            const char *c = st->ents[i].t.name;
            size_t a = strlen(c), b = strlen(name);
            if ((a > b && c[a - b - 1] == '.' && !strcmp(c + a - b, name)) ||
                (b > a && name[b - a - 1] == '.' && !strcmp(name + b - a, c)))
                return dfm_fail(DFM_E_FORMAT, "tensor '%s' not found in '%s' (it has '%s')", name,
                                st->source, c);
        }
        return dfm_fail(DFM_E_FORMAT, "tensor '%s' not found in '%s' (%d tensors)", name,
                        st->source, st->n);
    }
    const char *fdt = dfm_st_dtype_name(t);
    if (t->dtype == DFM_ST_OTHER)
        return dfm_fail(DFM_E_UNSUPPORTED, "tensor '%s': dtype %s is not supported (F32, BF16, F16, U8, I32, I64 are)",
                        name, fdt);
    int same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++) same = shape[i] == t->shape[i];
    int convertible = want == t->dtype || (is_float(want) && is_float(t->dtype));
    if (!same || !convertible) {
        char fs[200], ws[200];
        shape_str(fs, sizeof fs, t->ndim, t->shape);
        shape_str(ws, sizeof ws, ndim < 0 || ndim > 64 ? 0 : ndim, shape);
        return dfm_fail(DFM_E_FORMAT, "tensor '%s': file has shape %s %s, expected %s %s%s", name,
                        fs, fdt, ws, dfm_dtype_name(want),
                        convertible ? "" : " (no conversion between these dtypes)");
    }
    return 0;
}

int dfm_st_read(const dfm_st *st, const char *name, dfm_dtype want, int ndim, const int64_t *shape,
                void *dst)
{
    int rc = dfm_st_check(st, name, want, ndim, shape);
    if (rc) return rc;
    const dfm_st_tensor *t = dfm_st_find(st, name);
    size_t n = t->nbytes / dfm_dtype_size(t->dtype);
    if (want == t->dtype) {
        if (t->nbytes) memcpy(dst, t->data, t->nbytes);
        return 0;
    }
    return dfm_convert_floats(dst, want, t->data, t->dtype, n);
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Order of the Rust Dtype enum (declaration order) for the dtypes we write. */
static int dtype_rank(dfm_dtype t)
{
    switch (t) {
    case DFM_U8: return 0;
    case DFM_F16: return 1;
    case DFM_BF16: return 2;
    case DFM_I32: return 3;
    case DFM_F32: return 4;
    case DFM_I64: return 5;
    }
    return -1;
}

static int by_rank_name(const void *a, const void *b)
{
    const dfm_st_entry *x = *(const dfm_st_entry *const *)a, *y = *(const dfm_st_entry *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static int by_name_only(const void *a, const void *b)
{
    return strcmp((*(const dfm_st_entry *const *)a)->name, (*(const dfm_st_entry *const *)b)->name);
}

/* A JSON string as serde_json writes it. */
static int put_json_str(dfm_buf *b, const char *s)
{
    int rc = dfm_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
        const char *esc = NULL;
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        }
        if (esc) rc = dfm_buf_append(b, esc, strlen(esc));
        else if (*p < 0x20) rc = dfm_buf_printf(b, "\\u%04x", *p);
        else rc = dfm_buf_append(b, p, 1);
    }
    return rc ? rc : dfm_buf_append(b, "\"", 1);
}

static int write_all(int fd, const void *data, size_t len, const char *path)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return dfm_fail(DFM_E_IO, "cannot write '%s': %s", path, strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int entry_bytes(const dfm_st_entry *e, size_t *out)
{
    size_t n = dfm_dtype_size(e->dtype);
    for (int d = 0; d < e->ndim; d++)
        if (!dfm_mul_ok(n, (size_t)e->shape[d], &n))
            return dfm_fail(DFM_E_ARG, "tensor '%s': size overflows", e->name);
    *out = n;
    return 0;
}

/* Build the padded header (with its 8-byte length in front) for entries in file order. */
static int build_header(dfm_buf *h, const dfm_st_entry *const *ord, int n, const cJSON *meta)
{
    int rc = dfm_buf_append(h, "\0\0\0\0\0\0\0\0{", 9);
    int first = 1;
    if (!rc && meta) {
        rc = dfm_buf_printf(h, "\"__metadata__\":{");
        const cJSON *v;
        int k = 0;
        cJSON_ArrayForEach(v, meta)
        {
            if (rc) break;
            if (k++) rc = dfm_buf_append(h, ",", 1);
            if (!rc) rc = put_json_str(h, v->string);
            if (!rc) rc = dfm_buf_append(h, ":", 1);
            if (!rc) rc = put_json_str(h, v->valuestring);
        }
        if (!rc) rc = dfm_buf_append(h, "}", 1);
        first = 0;
    }
    uint64_t off = 0;
    for (int i = 0; i < n && !rc; i++) {
        size_t nb;
        rc = entry_bytes(ord[i], &nb);
        if (!rc && !first) rc = dfm_buf_append(h, ",", 1);
        first = 0;
        if (!rc) rc = put_json_str(h, ord[i]->name);
        if (!rc) rc = dfm_buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", dfm_dtype_name(ord[i]->dtype));
        for (int d = 0; d < ord[i]->ndim && !rc; d++)
            rc = dfm_buf_printf(h, "%s%lld", d ? "," : "", (long long)ord[i]->shape[d]);
        if (!rc)
            rc = dfm_buf_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                                (unsigned long long)(off + nb));
        off += nb;
    }
    if (!rc) rc = dfm_buf_append(h, "}", 1);
    while (!rc && (h->len - 8) % 8) rc = dfm_buf_append(h, " ", 1);
    if (rc) return rc;
    uint64_t hl = h->len - 8;
    for (int i = 0; i < 8; i++) h->data[i] = (uint8_t)(hl >> (8 * i));
    return 0;
}

int dfm_st_write(const char *path, const dfm_st_entry *entries, int n, const char *metadata_json)
{
    if (n < 0 || (n && !entries)) return dfm_fail(DFM_E_ARG, "'%s': bad tensor list", path);
    for (int i = 0; i < n; i++) {
        const dfm_st_entry *e = &entries[i];
        size_t nb;
        if (!e->name || !*e->name || !strcmp(e->name, "__metadata__"))
            return dfm_fail(DFM_E_ARG, "'%s': tensor %d has no usable name", path, i);
        if (dtype_rank(e->dtype) < 0)
            return dfm_fail(DFM_E_ARG, "'%s': tensor '%s' has a bad dtype", path, e->name);
        if (e->ndim < 0 || e->ndim > DFM_ST_MAX_DIMS)
            return dfm_fail(DFM_E_ARG, "'%s': tensor '%s' has %d dimensions", path, e->name, e->ndim);
        for (int d = 0; d < e->ndim; d++)
            if (e->shape[d] < 0)
                return dfm_fail(DFM_E_ARG, "'%s': tensor '%s' has a negative dimension", path, e->name);
        int rc = entry_bytes(e, &nb);
        if (rc) return rc;
        if (nb && !e->data) return dfm_fail(DFM_E_ARG, "'%s': tensor '%s' has no data", path, e->name);
    }
    cJSON *meta = NULL;
    if (metadata_json) {
        meta = cJSON_Parse(metadata_json);
        int ok = cJSON_IsObject(meta);
        const cJSON *v;
        if (ok) cJSON_ArrayForEach(v, meta) ok &= cJSON_IsString(v) && v->valuestring;
        if (!ok) {
            cJSON_Delete(meta);
            return dfm_fail(DFM_E_ARG, "'%s': metadata must be a JSON object of strings", path);
        }
    }
    const dfm_st_entry **ord = dfm_malloc((size_t)(n ? n : 1) * sizeof *ord);
    if (!ord) {
        cJSON_Delete(meta);
        return DFM_E_NOMEM;
    }
    for (int i = 0; i < n; i++) ord[i] = &entries[i];
    int rc = 0;
    if (n) qsort(ord, (size_t)n, sizeof *ord, by_name_only);
    for (int i = 1; i < n && !rc; i++)
        if (!strcmp(ord[i]->name, ord[i - 1]->name))
            rc = dfm_fail(DFM_E_ARG, "'%s': tensor '%s' given twice", path, ord[i]->name);
    if (n) qsort(ord, (size_t)n, sizeof *ord, by_rank_name);
    dfm_buf h = {0};
    if (!rc) rc = build_header(&h, ord, n, meta);
    cJSON_Delete(meta);
    char *tmp = NULL;
    int fd = -1;
    if (!rc) {
        size_t len = strlen(path) + 5;
        tmp = dfm_malloc(len);
        if (!tmp) rc = DFM_E_NOMEM;
        else snprintf(tmp, len, "%s.tmp", path);
    }
    if (!rc) {
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) rc = dfm_fail(DFM_E_IO, "cannot create '%s': %s", tmp, strerror(errno));
    }
    if (!rc) rc = write_all(fd, h.data, h.len, tmp);
    for (int i = 0; i < n && !rc; i++) {
        size_t nb;
        rc = entry_bytes(ord[i], &nb);
        if (!rc && nb) rc = write_all(fd, ord[i]->data, nb, tmp);
    }
    if (fd >= 0) {
        if (!rc && fsync(fd) != 0) rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
        if (close(fd) != 0 && !rc) rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
        if (!rc && rename(tmp, path) != 0)
            rc = dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        if (rc) unlink(tmp);
    }
    free(tmp);
    free(ord);
    dfm_buf_free(&h);
    return rc;
}
