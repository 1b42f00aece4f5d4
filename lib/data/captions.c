/* captions.c — finding the caption(s) of a media file (see captions.h for the source order).
 *
 * Per-file sources (NAME.txt, NAME.json) are read on every call; directory-level sources
 * (meta.json, captions.json, <prefix>_internvl.json) are parsed once into sorted key -> caption
 * tables and kept in a small LRU cache of the last DIR_CACHE directories; a JSONL manifest is
 * loaded once, whole, into one sorted table. Captions are cleaned when the tables are built, so
 * an entry whose caption cleans to "" is absent and the lookup falls through to the next source.
 * Malformed files are warned about once (when parsed) and treated as absent; nothing here fails
 * on bad input. Files written on Windows read the same as any other: a UTF-8 byte order mark at
 * the start of a file (and of each JSON Lines line) is dropped before parsing, CR and CRLF end
 * lines as LF does, and a caption loses any leading U+FEFF when it is cleaned.
 * NeMo's Wan cleaning (--clean-captions) runs on the captions found, after the source is chosen,
 * with the unescaping the program passes in (see captions.h).
 * Not here: the HTML unescaping itself (text/prompt_clean.c), ftfy, tokenization.
 */
#include "data/captions.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIDECAR_MAX ((size_t)1 << 20)    /* NAME.txt / NAME.json over 1 MiB are ignored */
#define DIRFILE_MAX ((size_t)1 << 30)    /* meta.json, captions.json, *_internvl.json */
#define DIR_CACHE 8                      /* directories whose files stay parsed */
#define IVL_PER_DIR 16                   /* <prefix>_internvl.json files kept per directory */

/* One key -> caption(s) entry of a sorted table. */
typedef struct {
    char *key;
    char **text; /* n cleaned, non-empty captions */
    int n;
    size_t ord;  /* position in the source, to keep the last of duplicate keys (dict semantics) */
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
} table;

typedef struct {
    char *prefix;
    table t;
} ivl_file;

typedef struct {
    char *dir; /* NULL: empty slot */
    unsigned long used;
    int meta_loaded, caps_loaded;
    table meta, caps;
    ivl_file ivl[IVL_PER_DIR];
    int nivl, ivl_next;
} dir_entry;

struct dfm_captioner {
    const char *json_fields[2];   /* NAME.json and meta.json: field; NULL-terminated */
    const char *ivl_fields[5];    /* internvl: field if given, internvl, usr, caption */
    const char *mf_fields[6];     /* manifest: field, internvl, usr, caption, text */
    char *field;
    char *(*prompt_clean)(const char *s, size_t len); /* --clean-captions, or NULL */
    int have_manifest;
    char *mdir;                   /* the manifest's directory, absolute and normalized */
    table mf;
    dir_entry cache[DIR_CACHE];
    unsigned long clock;
};

/* ---------------------------------------------------------------- cleaning */

static int is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

#define BOM "\xEF\xBB\xBF" /* U+FEFF in UTF-8 */

static int is_bom(const char *p, size_t n) { return n >= 3 && !memcmp(p, BOM, 3); }

// ref: NeMo AutoModel tools/diffusion/processors/wan.py (strip + re.sub(r"\s+", " ", text))
void dfm_caption_clean(char *s)
{
    if (!s) return;
    char *w = s;
    int pending = 0;
    for (const char *r = s; *r; r++) {
        if (w == s && r[0] == BOM[0] && r[1] == BOM[1] && r[2] == BOM[2]) { /* before the text */
            r += 2;
            continue;
        }
        if (is_ws(*r)) {
            pending = w != s; /* never a leading space */
            continue;
        }
        if (pending) *w++ = ' ';
        pending = 0;
        *w++ = *r;
    }
    *w = 0;
}

/* Python's str.isspace() for the code point at s[i] (UTF-8); its byte length in *len (1 for a
 * byte that does not start a valid sequence, which is not space). */
static int py_space_at(const unsigned char *s, size_t i, int *len)
{
    unsigned char c = s[i];
    *len = 1;
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    int l = c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? (c < 0xF0 ? 3 : 0) : c >= 0xC2 ? 2 : 0;
    if (!l) return 0;
    uint32_t cp = c & (0x7F >> l);
    for (int k = 1; k < l; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return 0; /* also stops at the NUL */
        cp = cp << 6 | (s[i + k] & 63);
    }
    *len = l;
    if (l == 3 && cp < 0x800) return 0; /* overlong: not a character */
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// ref: NeMo AutoModel tools/diffusion/processors/wan.py _whitespace_clean (re module: str.isspace)
void dfm_caption_collapse_space(char *str)
{
    if (!str) return;
    unsigned char *s = (unsigned char *)str;
    size_t w = 0;
    int pending = 0;
    for (size_t r = 0; s[r];) {
        int l;
        if (py_space_at(s, r, &l)) {
            pending = w > 0; /* never a leading space */
            r += (size_t)l;
            continue;
        }
        if (pending) s[w++] = ' ';
        pending = 0;
        memmove(s + w, s + r, (size_t)l);
        w += (size_t)l, r += (size_t)l;
    }
    s[w] = 0;
}

/* ---------------------------------------------------------------- tables */

static void entry_free(entry *e)
{
    free(e->key);
    for (int i = 0; i < e->n; i++) free(e->text[i]);
    free(e->text);
}

static void table_free(table *t)
{
    for (size_t i = 0; i < t->n; i++) entry_free(&t->e[i]);
    free(t->e);
    memset(t, 0, sizeof *t);
}

/* Append a cleaned copy of `s` to e's captions unless it cleans to "". */
static int entry_add_text(entry *e, const char *s)
{
    char *c = dfm_strdup(s);
    if (!c) return DFM_E_NOMEM;
    dfm_caption_clean(c);
    if (!*c) {
        free(c);
        return 0;
    }
    char **p = dfm_realloc(e->text, (size_t)(e->n + 1) * sizeof *p);
    if (!p) {
        free(c);
        return DFM_E_NOMEM;
    }
    e->text = p;
    e->text[e->n++] = c;
    return 0;
}

/* Take ownership of *e (its key and texts) if it has captions; free it otherwise. */
static int table_push(table *t, entry *e)
{
    if (e->n == 0) {
        entry_free(e);
        return 0;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        entry *p = dfm_realloc(t->e, cap * sizeof *p);
        if (!p) {
            entry_free(e);
            return DFM_E_NOMEM;
        }
        t->e = p;
        t->cap = cap;
    }
    e->ord = t->n;
    t->e[t->n++] = *e;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return x->ord < y->ord ? -1 : x->ord > y->ord;
}

/* Sort by key; of equal keys keep the last one read (as a Python dict built in order would). */
static void table_finish(table *t)
{
    if (t->n < 2) return;
    qsort(t->e, t->n, sizeof *t->e, cmp_entry);
    size_t w = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (i + 1 < t->n && !strcmp(t->e[i].key, t->e[i + 1].key)) {
            entry_free(&t->e[i]);
            continue;
        }
        t->e[w++] = t->e[i];
    }
    t->n = w;
}

static const entry *table_find(const table *t, const char *key)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->e[mid].key, key);
        if (c == 0) return &t->e[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---------------------------------------------------------------- paths */

static const char *base_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Length of the stem of a basename: up to its last '.', unless that is the first character. */
static size_t stem_len(const char *base)
{
    const char *dot = strrchr(base, '.');
    return dot && dot != base ? (size_t)(dot - base) : strlen(base);
}

/* The directory part of `path` (lexical): "." without a slash, "/" for "/x". */
static char *dir_of(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s) return dfm_strdup(".");
    if (s == path) return dfm_strdup("/");
    return dfm_strndup(path, (size_t)(s - path));
}

/* `path` with its extension replaced by `ext` (".txt"). */
static char *with_ext(const char *path, const char *ext)
{
    const char *base = base_of(path);
    size_t keep = (size_t)(base - path) + stem_len(base);
    dfm_buf b = {0};
    if (dfm_buf_append(&b, path, keep) || dfm_buf_append(&b, ext, strlen(ext))) {
        dfm_buf_free(&b);
        return NULL;
    }
    return (char *)dfm_buf_take(&b, NULL);
}

static char *join(const char *dir, const char *name)
{
    dfm_buf b = {0};
    size_t dl = strlen(dir);
    int sep = dl && dir[dl - 1] != '/';
    if (dfm_buf_printf(&b, "%s%s%s", dir, sep ? "/" : "", name)) {
        dfm_buf_free(&b);
        return NULL;
    }
    return (char *)dfm_buf_take(&b, NULL);
}

/* Lexical normalization: drop "." and empty components, fold "x/.." (no symlinks resolved).
 * Absolute stays absolute; "" and "." become ".". */
static char *normalize(const char *path)
{
    size_t len = strlen(path);
    char *out = dfm_malloc(len + 2);
    if (!out) return NULL;
    int abs = path[0] == '/';
    size_t w = 0;
    if (abs) out[w++] = '/';
    size_t root = w; /* nothing above this can be removed */
    const char *p = path;
    while (*p) {
        while (*p == '/') p++;
        const char *q = p;
        while (*q && *q != '/') q++;
        size_t n = (size_t)(q - p);
        if (n == 0 || (n == 1 && p[0] == '.')) {
            /* skip */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            /* pop the last component unless it is itself ".." or we are at the root */
            size_t s = w;
            while (s > root && out[s - 1] != '/') s--;
            int last_dotdot = w - s == 2 && out[s] == '.' && out[s + 1] == '.';
            if (w > root && !last_dotdot) {
                w = s > root ? s - 1 : root;
            } else if (!abs) {
                if (w > root) out[w++] = '/';
                out[w++] = '.';
                out[w++] = '.';
            }
        } else {
            if (w > root) out[w++] = '/';
            memcpy(out + w, p, n);
            w += n;
        }
        p = q;
    }
    if (w == 0) out[w++] = '.';
    out[w] = 0;
    return out;
}

/* Absolute, normalized form of `path` (relative to the current directory). */
static char *absolute(const char *path)
{
    if (path[0] == '/') return normalize(path);
    char *cwd = getcwd(NULL, 0);
    if (!cwd) return normalize(path); /* best effort: stays relative */
    char *j = join(cwd, path);
    free(cwd);
    if (!j) return NULL;
    char *n = normalize(j);
    free(j);
    return n;
}

/* ---------------------------------------------------------------- reading */

/* Read a caption source file. Returns 1 with its bytes in *b, 0 when it is absent, too big or
 * unreadable (a warning says which, except for absent), or DFM_E_NOMEM. */
static int read_source(const char *path, size_t limit, dfm_buf *b)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            dfm_log_warn("caption source '%s' ignored: %s", path, strerror(errno));
        return 0;
    }
    if (!S_ISREG(st.st_mode)) return 0;
    if ((uint64_t)st.st_size > limit) {
        dfm_log_warn("caption source '%s' ignored: %lld bytes, over the limit of %zu", path,
                     (long long)st.st_size, limit);
        return 0;
    }
    b->len = 0;
    int rc = dfm_read_file(path, limit, b);
    if (rc == DFM_E_NOMEM) return rc;
    if (rc) {
        dfm_log_warn("caption source '%s' ignored: %s", path, dfm_errmsg());
        return 0;
    }
    if (is_bom((const char *)b->data, b->len)) { /* dfm_read_file keeps a NUL after the data */
        memmove(b->data, b->data + 3, b->len - 3 + 1);
        b->len -= 3;
    }
    return 1;
}

static cJSON *parse_json(const char *path, const dfm_buf *b)
{
    cJSON *j = cJSON_ParseWithLength((const char *)b->data, b->len);
    if (!j) dfm_log_warn("caption source '%s' ignored: not valid JSON", path);
    return j;
}

/* The first of `fields` whose value in object `o` is a string that cleans to non-empty, added
 * to e. */
static int add_first_field(entry *e, const cJSON *o, const char *const *fields)
{
    for (int i = 0; fields[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, fields[i]);
        if (!cJSON_IsString(v) || !v->valuestring) continue;
        int rc = entry_add_text(e, v->valuestring);
        if (rc || e->n) return rc;
    }
    return 0;
}

static const char *string_field(const cJSON *o, const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, names[i]);
        if (cJSON_IsString(v) && v->valuestring) return v->valuestring;
    }
    return NULL;
}

static const char *const item_name_fields[] = {"file_name", "filename", NULL};
static const char *const manifest_name_fields[] = {"file_name", "filename", "path", NULL};

/* Add the entry {name-field -> caption fields} of JSON object `o` to t; non-objects and
 * objects without a name are counted in *bad. */
static int table_add_item(table *t, const cJSON *o, const char *const *names,
                          const char *const *fields, int normalize_key, size_t *bad)
{
    if (!cJSON_IsObject(o)) {
        (*bad)++;
        return 0;
    }
    const char *name = string_field(o, names);
    if (!name || !*name) {
        (*bad)++;
        return 0;
    }
    entry e = {0};
    e.key = normalize_key ? normalize(name) : dfm_strdup(name);
    if (!e.key) return DFM_E_NOMEM;
    int rc = add_first_field(&e, o, fields);
    if (rc) {
        entry_free(&e);
        return rc;
    }
    return table_push(t, &e);
}

// ref: NeMo AutoModel tools/diffusion/processors/caption_loaders.py (meta_json loader)
static int load_meta(const dfm_captioner *c, const char *dir, table *t)
{
    char *path = join(dir, "meta.json");
    if (!path) return DFM_E_NOMEM;
    dfm_buf b = {0};
    int rc = read_source(path, DIRFILE_MAX, &b);
    if (rc <= 0) goto out;
    rc = 0;
    cJSON *j = parse_json(path, &b);
    if (!j) goto out;
    const cJSON *items = j;
    if (cJSON_IsObject(j)) {
        items = cJSON_GetObjectItemCaseSensitive(j, "items");
        if (!items) items = cJSON_GetObjectItemCaseSensitive(j, "data");
    }
    if (!cJSON_IsArray(items)) {
        dfm_log_warn("caption source '%s' ignored: not an array of items (nor an object with "
                     "\"items\" or \"data\")", path);
    } else {
        size_t bad = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            if ((rc = table_add_item(t, it, item_name_fields, c->json_fields, 0, &bad))) break;
        }
        if (bad) dfm_log_warn("caption source '%s': %zu items without a file name", path, bad);
        table_finish(t);
    }
    cJSON_Delete(j);
out:
    dfm_buf_free(&b);
    free(path);
    return rc;
}

// ref: diffusion-pipe utils/dataset.py DirectoryDataset._get_ungrouped_metadata (captions.json)
static int load_captions_json(const char *dir, table *t)
{
    char *path = join(dir, "captions.json");
    if (!path) return DFM_E_NOMEM;
    dfm_buf b = {0};
    int rc = read_source(path, DIRFILE_MAX, &b);
    if (rc <= 0) goto out;
    rc = 0;
    cJSON *j = parse_json(path, &b);
    if (!j) goto out;
    if (!cJSON_IsObject(j)) {
        dfm_log_warn("caption source '%s' ignored: not an object of file name -> captions", path);
    } else {
        size_t bad = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, j) {
            if (!it->string || !cJSON_IsArray(it)) { /* dp asserts a list; we skip the entry */
                bad++;
                continue;
            }
            entry e = {0};
            if (!(e.key = dfm_strdup(it->string))) {
                rc = DFM_E_NOMEM;
                break;
            }
            const cJSON *s;
            cJSON_ArrayForEach(s, it) {
                if (cJSON_IsString(s) && s->valuestring && (rc = entry_add_text(&e, s->valuestring)))
                    break;
            }
            if (rc) {
                entry_free(&e);
                break;
            }
            if ((rc = table_push(t, &e))) break; /* e is freed on failure */
        }
        if (bad) dfm_log_warn("caption source '%s': %zu entries are not lists of captions", path, bad);
        table_finish(t);
    }
    cJSON_Delete(j);
out:
    dfm_buf_free(&b);
    free(path);
    return rc;
}

/* Parse JSON Lines text (or, if it starts with '[', one JSON array of objects) into t. Lines end
 * at LF, CRLF or CR; a byte order mark at the start of a line is dropped. Malformed lines are
 * counted in *bad and skipped. */
static int load_jsonl_text(char *text, size_t len, const char *const *names,
                           const char *const *fields, int normalize_key, table *t, size_t *bad)
{
    int rc = 0;
    size_t i = 0;
    while (i < len && (is_ws(text[i]) || is_bom(text + i, len - i))) i += is_ws(text[i]) ? 1 : 3;
    if (i < len && text[i] == '[') {
        cJSON *j = cJSON_ParseWithLength(text + i, len - i);
        if (!j || !cJSON_IsArray(j)) {
            (*bad)++;
            cJSON_Delete(j);
            return 0;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, j) {
            if ((rc = table_add_item(t, it, names, fields, normalize_key, bad))) break;
        }
        cJSON_Delete(j);
        return rc;
    }
    char *p = text, *end = text + len;
    while (p < end && rc == 0) {
        char *nl = p;
        while (nl < end && *nl != '\n' && *nl != '\r') nl++;
        char *le = nl;
        if (nl == end) nl = NULL;
        char *s = p;
        while (s < le && (is_ws(*s) || is_bom(s, (size_t)(le - s)))) s += is_ws(*s) ? 1 : 3;
        if (s < le) {
            cJSON *j = cJSON_ParseWithLength(s, (size_t)(le - s));
            if (!j) (*bad)++;
            else rc = table_add_item(t, j, names, fields, normalize_key, bad);
            cJSON_Delete(j);
        }
        p = nl ? nl + 1 : end;
    }
    return rc;
}

// ref: NeMo AutoModel tools/diffusion/processors/caption_loaders.py (jsonl / internvl loader)
static int load_internvl(const dfm_captioner *c, const char *path, table *t)
{
    dfm_buf b = {0};
    int rc = read_source(path, DIRFILE_MAX, &b);
    if (rc > 0) {
        size_t bad = 0;
        rc = load_jsonl_text((char *)b.data, b.len, item_name_fields, c->ivl_fields, 0, t, &bad);
        if (bad) dfm_log_warn("caption source '%s': %zu malformed lines skipped", path, bad);
        table_finish(t);
    }
    dfm_buf_free(&b);
    return rc < 0 ? rc : 0;
}

static int load_manifest(dfm_captioner *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return dfm_fail(DFM_E_IO, "cannot open caption manifest '%s': %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, bad = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0)
        rc = load_jsonl_text(line, (size_t)n, manifest_name_fields, c->mf_fields, 1, &c->mf, &bad);
    if (rc == 0 && ferror(f))
        rc = dfm_fail(DFM_E_IO, "cannot read caption manifest '%s': %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (rc) return rc;
    if (bad) dfm_log_warn("caption manifest '%s': %zu malformed lines skipped", path, bad);
    table_finish(&c->mf);
    return 0;
}

/* ---------------------------------------------------------------- the captioner */

static void dir_entry_free(dir_entry *d)
{
    free(d->dir);
    table_free(&d->meta);
    table_free(&d->caps);
    for (int i = 0; i < d->nivl; i++) {
        free(d->ivl[i].prefix);
        table_free(&d->ivl[i].t);
    }
    memset(d, 0, sizeof *d);
}

/* Fill a NULL-terminated list with `first` (if any) then `rest`, skipping duplicates. */
static void field_list(const char **out, const char *first, const char *const *rest)
{
    int n = 0;
    if (first) out[n++] = first;
    for (int i = 0; rest[i]; i++) {
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= !strcmp(out[k], rest[i]);
        if (!dup) out[n++] = rest[i];
    }
    out[n] = NULL;
}

int dfm_captioner_new(dfm_captioner **out, const dfm_caption_opts *opts)
{
    *out = NULL;
    dfm_captioner *c = dfm_calloc(1, sizeof *c);
    if (!c) return DFM_E_NOMEM;
    const char *field = opts && opts->field && *opts->field ? opts->field : NULL;
    if (field && !(c->field = dfm_strdup(field))) {
        free(c);
        return DFM_E_NOMEM;
    }
    c->json_fields[0] = c->field ? c->field : "caption";
    c->json_fields[1] = NULL;
    /* internvl: the field only when given and not the default, then NeMo's choices. */
    static const char *const ivl_rest[] = {"internvl", "usr", "caption", NULL};
    field_list(c->ivl_fields, c->field && strcmp(c->field, "caption") ? c->field : NULL, ivl_rest);
    static const char *const mf_rest[] = {"internvl", "usr", "caption", "text", NULL};
    field_list(c->mf_fields, c->json_fields[0], mf_rest);
    c->prompt_clean = opts ? opts->prompt_clean : NULL;

    if (opts && opts->manifest) {
        c->have_manifest = 1;
        char *d = dir_of(opts->manifest);
        c->mdir = d ? absolute(d) : NULL;
        free(d);
        int rc = c->mdir ? load_manifest(c, opts->manifest) : DFM_E_NOMEM;
        if (rc) {
            dfm_captioner_free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void dfm_captioner_free(dfm_captioner *c)
{
    if (!c) return;
    for (int i = 0; i < DIR_CACHE; i++) dir_entry_free(&c->cache[i]);
    table_free(&c->mf);
    free(c->mdir);
    free(c->field);
    free(c);
}

/* The cache entry of directory `dir`, (re)using the least recently used slot. */
static dir_entry *dir_get(dfm_captioner *c, const char *dir)
{
    dir_entry *slot = &c->cache[0];
    for (int i = 0; i < DIR_CACHE; i++) {
        dir_entry *d = &c->cache[i];
        if (d->dir && !strcmp(d->dir, dir)) {
            d->used = ++c->clock;
            return d;
        }
        if (!d->dir) {
            if (slot->dir) slot = d;
        } else if (slot->dir && d->used < slot->used) {
            slot = d;
        }
    }
    dir_entry_free(slot);
    if (!(slot->dir = dfm_strdup(dir))) return NULL;
    slot->used = ++c->clock;
    return slot;
}

/* The internvl table for `prefix` in directory d, loading <dir>/<prefix>_internvl.json on first
 * use. NULL with *rc = 0 when there is no such file. */
static const table *ivl_get(dfm_captioner *c, dir_entry *d, const char *prefix, int *rc)
{
    *rc = 0;
    for (int i = 0; i < d->nivl; i++)
        if (d->ivl[i].prefix && !strcmp(d->ivl[i].prefix, prefix)) return &d->ivl[i].t;
    dfm_buf name = {0};
    if (dfm_buf_printf(&name, "%s_internvl.json", prefix)) {
        *rc = DFM_E_NOMEM;
        return NULL;
    }
    char *path = join(d->dir, (const char *)name.data);
    dfm_buf_free(&name);
    if (!path) {
        *rc = DFM_E_NOMEM;
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) { /* absent: not cached, one stat per file */
        free(path);
        return NULL;
    }
    int k = d->nivl < IVL_PER_DIR ? d->nivl++ : d->ivl_next;
    d->ivl_next = (k + 1) % IVL_PER_DIR;
    ivl_file *f = &d->ivl[k];
    free(f->prefix);
    table_free(&f->t);
    f->prefix = dfm_strdup(prefix);
    *rc = f->prefix ? load_internvl(c, path, &f->t) : DFM_E_NOMEM;
    free(path);
    if (*rc) { /* out of memory: leave the slot empty (a NULL prefix matches nothing) */
        free(f->prefix);
        f->prefix = NULL;
        table_free(&f->t);
        return NULL;
    }
    return &f->t;
}

static int set_result(dfm_captions *out, char **text, int n, const char *source)
{
    out->text = dfm_malloc((size_t)n * sizeof *out->text);
    if (!out->text) return DFM_E_NOMEM;
    for (int i = 0; i < n; i++) {
        if (!(out->text[i] = dfm_strdup(text[i]))) {
            for (int k = 0; k < i; k++) free(out->text[k]);
            free(out->text);
            out->text = NULL;
            return DFM_E_NOMEM;
        }
    }
    out->n = n;
    out->source = source;
    return 0;
}

/* A single caption from a string; 1 if found (non-empty after cleaning), 0 if not. */
static int set_cleaned(dfm_captions *out, const char *s, const char *source)
{
    char *t = dfm_strdup(s);
    if (!t) return DFM_E_NOMEM;
    dfm_caption_clean(t);
    if (!*t) {
        free(t);
        return 0;
    }
    out->text = dfm_malloc(sizeof *out->text);
    if (!out->text) {
        free(t);
        return DFM_E_NOMEM;
    }
    out->text[0] = t;
    out->n = 1;
    out->source = source;
    return 1;
}

static int from_entry(dfm_captions *out, const entry *e, const char *source)
{
    if (!e) return 0;
    int rc = set_result(out, e->text, e->n, source);
    return rc ? rc : 1;
}

// ref: NeMo AutoModel caption_loaders.py (jsonl), matched by path as dfm-decode's NOTE-C asks
static int find_manifest(dfm_captioner *c, const char *path, dfm_captions *out)
{
    char *abs = absolute(path);
    if (!abs) return DFM_E_NOMEM;
    const entry *e = NULL;
    size_t ml = strlen(c->mdir);
    if (!strcmp(c->mdir, "/") && abs[0] == '/') e = table_find(&c->mf, abs + 1);
    else if (!strncmp(abs, c->mdir, ml) && abs[ml] == '/') e = table_find(&c->mf, abs + ml + 1);
    if (!e) e = table_find(&c->mf, abs);
    if (!e) e = table_find(&c->mf, base_of(path));
    free(abs);
    return from_entry(out, e, "manifest");
}

// ref: NeMo AutoModel caption_loaders.py (sidecar), diffusion-pipe _metadata_map_fn (.txt)
static int find_sidecar_txt(const char *path, dfm_captions *out)
{
    char *p = with_ext(path, ".txt");
    if (!p) return DFM_E_NOMEM;
    dfm_buf b = {0};
    int rc = read_source(p, SIDECAR_MAX, &b);
    if (rc > 0) rc = set_cleaned(out, (const char *)b.data, "txt");
    dfm_buf_free(&b);
    free(p);
    return rc;
}

// ref: NeMo AutoModel caption_loaders.py (sidecar json: caption at --caption_field)
static int find_sidecar_json(const dfm_captioner *c, const char *path, dfm_captions *out)
{
    char *p = with_ext(path, ".json");
    if (!p) return DFM_E_NOMEM;
    dfm_buf b = {0};
    int rc = read_source(p, SIDECAR_MAX, &b);
    if (rc > 0) {
        rc = 0;
        cJSON *j = parse_json(p, &b);
        const cJSON *v = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, c->json_fields[0]) : NULL;
        if (cJSON_IsString(v) && v->valuestring) rc = set_cleaned(out, v->valuestring, "json");
        cJSON_Delete(j);
    }
    dfm_buf_free(&b);
    free(p);
    return rc;
}

/* NeMo's internvl grouping prefix: the name before its last "_sample", else the stem. */
static char *ivl_prefix(const char *base)
{
    size_t sl = stem_len(base);
    const char *last = NULL;
    for (const char *s = base; (s = strstr(s, "_sample")) && (size_t)(s - base) < sl; s++) last = s;
    if (last && (size_t)(last - base) + 7 > sl) last = NULL; /* "_sample" must lie in the stem */
    return dfm_strndup(base, last ? (size_t)(last - base) : sl);
}

static int find_raw(dfm_captioner *c, const char *path, dfm_captions *out)
{
    int rc;
    if (c->have_manifest && (rc = find_manifest(c, path, out))) return rc < 0 ? rc : 0;
    if ((rc = find_sidecar_txt(path, out))) return rc < 0 ? rc : 0;
    if ((rc = find_sidecar_json(c, path, out))) return rc < 0 ? rc : 0;

    const char *base = base_of(path);
    char *dir = dir_of(path);
    if (!dir) return DFM_E_NOMEM;
    dir_entry *d = dir_get(c, dir);
    free(dir);
    if (!d) return DFM_E_NOMEM;
    if (!d->meta_loaded) {
        d->meta_loaded = 1;
        if ((rc = load_meta(c, d->dir, &d->meta))) return rc;
    }
    if ((rc = from_entry(out, table_find(&d->meta, base), "meta.json"))) return rc < 0 ? rc : 0;
    if (!d->caps_loaded) {
        d->caps_loaded = 1;
        if ((rc = load_captions_json(d->dir, &d->caps))) return rc;
    }
    if ((rc = from_entry(out, table_find(&d->caps, base), "captions.json"))) return rc < 0 ? rc : 0;
    char *prefix = ivl_prefix(base);
    if (!prefix) return DFM_E_NOMEM;
    const table *t = ivl_get(c, d, prefix, &rc);
    free(prefix);
    if (rc) return rc;
    if (t && (rc = from_entry(out, table_find(t, base), "internvl"))) return rc < 0 ? rc : 0;

    // ref: NeMo AutoModel caption_loaders.py (fallback: stem with '_' -> ' ')
    char *s = dfm_strndup(base, stem_len(base));
    if (!s) return DFM_E_NOMEM;
    for (char *p = s; *p; p++)
        if (*p == '_') *p = ' ';
    dfm_caption_clean(s);
    out->text = dfm_malloc(sizeof *out->text);
    if (!out->text) {
        free(s);
        return DFM_E_NOMEM;
    }
    out->text[0] = s; /* may be "" for a name like "_.png": still one caption */
    out->n = 1;
    out->source = "filename";
    return 0;
}

/* --clean-captions on every caption found (captions.h); "" stays, with a warning. */
static int nemo_clean(const dfm_captioner *c, const char *path, dfm_captions *caps)
{
    int empty = 0;
    for (int i = 0; i < caps->n; i++) {
        char *t = c->prompt_clean(caps->text[i], strlen(caps->text[i]));
        if (!t) return dfm_fail(DFM_E_NOMEM, "out of memory");
        dfm_caption_collapse_space(t);
        empty += !*t && *caps->text[i];
        free(caps->text[i]);
        caps->text[i] = t;
    }
    if (empty == 1 && caps->n == 1)
        dfm_log_warn("'%s': its caption (from %s) is empty after --clean-captions; written empty, "
                     "as NeMo would encode it", path, caps->source);
    else if (empty)
        dfm_log_warn("'%s': %d of its %d captions (from %s) are empty after --clean-captions; "
                     "written empty, as NeMo would encode them", path, empty, caps->n, caps->source);
    return 0;
}

int dfm_captions_find(dfm_captioner *c, const char *path, dfm_captions *out)
{
    memset(out, 0, sizeof *out);
    if (!c || !path || !*path) return dfm_fail(DFM_E_ARG, "no captioner or path");
    int rc = find_raw(c, path, out);
    if (!rc && c->prompt_clean) rc = nemo_clean(c, path, out);
    if (rc) dfm_captions_free(out);
    return rc;
}

void dfm_captions_free(dfm_captions *caps)
{
    if (!caps) return;
    for (int i = 0; i < caps->n; i++) free(caps->text[i]);
    free(caps->text);
    caps->text = NULL;
    caps->n = 0;
}
