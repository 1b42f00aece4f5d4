/* config.c — see config.h. YAML goes through libyaml's document loader (nodes with line marks;
 * scalars arrive as text, so every type conversion here is ours, with full-consumption checks).
 * Values live in one cfg_val per schema key; a load works on a copy of them and swaps it in only
 * when the whole file applied, so a bad file changes nothing. Not here: YAML writing through
 * libyaml's emitter (it cannot write comments) — dfm_config_write prints the small subset itself.
 */
#include "base/config.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define CFG_MAX_FILE ((size_t)16 << 20)

typedef struct {
    int has;      /* holds a value (not null) */
    int given;    /* set by a file or the command line */
    int64_t i;    /* INT */
    double f;     /* FLOAT */
    int b;        /* BOOL */
    char *s;      /* STR, ENUM */
    int n;        /* STRLIST, FLOATLIST */
    char **sl;
    double *fl;
    char *origin; /* "default", "FILE:LINE", "command line" */
} cfg_val;

struct dfm_config {
    const dfm_cfg_key *schema;
    int n;
    cfg_val *v;
};

/* Where a value comes from: the message prefix, the origin to record, how the key is spelt. */
typedef struct {
    const char *where;   /* "config.yaml:12", "command line", "schema default" */
    const char *origin;  /* recorded by dfm_config_origin */
    const char *subject; /* "optim.lr" or "--optim.lr" */
    int given;
} cfg_ctx;

/* ---- values ---- */

static void val_clear(cfg_val *v)
{
    free(v->s);
    for (int i = 0; i < v->n && v->sl; i++) free(v->sl[i]);
    free(v->sl);
    free(v->fl);
    free(v->origin);
    memset(v, 0, sizeof *v);
}

static int val_copy(cfg_val *d, const cfg_val *s)
{
    *d = *s;
    d->s = NULL, d->sl = NULL, d->fl = NULL, d->origin = NULL;
    int ok = 1;
    if (s->s) ok &= (d->s = dfm_strdup(s->s)) != NULL;
    if (s->origin) ok &= (d->origin = dfm_strdup(s->origin)) != NULL;
    if (s->sl) {
        ok &= (d->sl = dfm_calloc((size_t)s->n + 1, sizeof *d->sl)) != NULL;
        for (int i = 0; ok && i < s->n; i++) ok &= (d->sl[i] = dfm_strdup(s->sl[i])) != NULL;
    }
    if (s->fl) {
        ok &= (d->fl = dfm_malloc(((size_t)s->n + 1) * sizeof *d->fl)) != NULL;
        if (ok) memcpy(d->fl, s->fl, (size_t)s->n * sizeof *d->fl);
    }
    if (!ok) {
        if (!d->sl) d->n = 0;
        val_clear(d);
        return DFM_E_NOMEM;
    }
    return 0;
}

static void vals_free(cfg_val *v, int n)
{
    for (int i = 0; v && i < n; i++) val_clear(&v[i]);
    free(v);
}

static cfg_val *vals_clone(const cfg_val *v, int n)
{
    cfg_val *d = dfm_calloc((size_t)n + 1, sizeof *d);
    for (int i = 0; d && i < n; i++)
        if (val_copy(&d[i], &v[i])) {
            vals_free(d, i);
            return NULL;
        }
    return d;
}

/* ---- messages ---- */

static int cfg_err(const cfg_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int cfg_err(const cfg_ctx *x, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dfm_fail(DFM_E_ARG, "%s: %s", x->where, msg);
}

/* Levenshtein distance of two short strings (past 63 bytes: "far"). */
static int edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    if (la > 63 || lb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < d) d = prev[j] + 1;
            if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
            cur[j] = d;
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

static const char *last_part(const char *k)
{
    const char *d = strrchr(k, '.');
    return d ? d + 1 : k;
}

/* A close schema name for a misspelt `name` (a full "sec.name", a section or a top-level name):
 * the nearest key or section within edit distance 2 (and under half the longer length), else a
 * key with the same last part in another section. Writes " (did you mean 'PREFIXname'?)" into
 * out, or "" when there is none. */
static void suggest(const dfm_config *c, const char *name, const char *prefix, char *out,
                    size_t cap)
{
    out[0] = 0;
    size_t ln = strlen(name);
    const char *best = NULL;
    size_t best_len = 0;
    int best_d = 3;
    for (int i = 0; i < c->n; i++) {
        const char *k = c->schema[i].key, *dot = strchr(k, '.');
        /* the key itself, then its section */
        for (int pass = 0; pass < 2; pass++) {
            size_t lk = pass ? (dot ? (size_t)(dot - k) : 0) : strlen(k);
            if (!lk) continue;
            int d = edit_distance(name, ln, k, lk);
            size_t longer = ln > lk ? ln : lk;
            if (d > 0 && d < best_d && (size_t)d * 2 < longer) best = k, best_len = lk, best_d = d;
        }
    }
    if (!best) {
        const char *lp = last_part(name);
        for (int i = 0; i < c->n && !best; i++)
            if (strcmp(c->schema[i].key, name) && !strcmp(last_part(c->schema[i].key), lp))
                best = c->schema[i].key, best_len = strlen(best);
    }
    if (best) snprintf(out, cap, " (did you mean '%s%.*s'?)", prefix, (int)best_len, best);
}

/* ---- schema lookups ---- */

static int find_key(const dfm_config *c, const char *key)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->schema[i].key, key)) return i;
    return -1;
}

static int is_section(const dfm_config *c, const char *name, size_t len)
{
    for (int i = 0; i < c->n; i++) {
        const char *k = c->schema[i].key;
        if (!strncmp(k, name, len) && k[len] == '.') return 1;
    }
    return 0;
}

/* Is `s` one of the choices "a|b|c"? */
static int in_choices(const char *choices, const char *s)
{
    size_t ls = strlen(s);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == ls && !strncmp(p, s, l)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static void suggest_choice(const char *choices, const char *s, char *out, size_t cap)
{
    out[0] = 0;
    int best_d = 3;
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        int d = edit_distance(s, strlen(s), p, l);
        if (d < best_d && (size_t)d * 2 < l) {
            best_d = d;
            snprintf(out, cap, " (did you mean '%.*s'?)", (int)l, p);
        }
        if (!e) break;
        p = e + 1;
    }
}

/* ---- scalars ---- */

static int is_null_word(const char *s)
{
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int is_null_node(const yaml_node_t *nd)
{
    return nd->type == YAML_SCALAR_NODE && nd->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           is_null_word((const char *)nd->data.scalar.value);
}

/* A finite decimal number: digits, sign, '.', exponent; strtod must consume it all. */
static int parse_float(const char *s, double *out)
{
    int digit = 0;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9') digit = 1;
        else if (!strchr("+-.eE", *p)) return -1;
    }
    if (!digit) return -1;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

/* 0 ok, -1 not an integer, -2 out of range. Integral floats up to 2^53 ("1e4") are accepted. */
static int parse_int(const char *s, int64_t *out)
{
    const char *p = s + (*s == '+' || *s == '-');
    int plain = *p != 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9') plain = 0;
    if (plain) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno == ERANGE) return -2;
        *out = v;
        return 0;
    }
    double x;
    if (parse_float(s, &x)) return -1;
    if (x != floor(x)) return -1;
    if (fabs(x) > 9007199254740992.0) return -2;
    *out = (int64_t)x;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"true", "yes", "on"}, *const f[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, t[i])) return *out = 1, 0;
        if (!strcasecmp(s, f[i])) return *out = 0, 0;
    }
    return -1;
}

/* ${VAR}, ${VAR:-default} (default when VAR is unset or empty), $${ -> ${. Result malloc'd and
 * checked to be UTF-8 without NUL. */
static int interpolate(const char *s, const cfg_ctx *x, char **out)
{
    *out = NULL;
    dfm_buf b = {0};
    int rc = 0;
    for (const char *p = s; *p && !rc;) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            rc = dfm_buf_append(&b, "${", 2);
            p += 3;
            continue;
        }
        if (!(p[0] == '$' && p[1] == '{')) {
            rc = dfm_buf_append(&b, p, 1);
            p++;
            continue;
        }
        const char *name = p + 2, *q = name, *def = NULL;
        size_t dlen = 0;
        if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || *q == '_')
            while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || *q == '_' ||
                   (*q >= '0' && *q <= '9'))
                q++;
        size_t nlen = (size_t)(q - name);
        if (nlen && q[0] == ':' && q[1] == '-') {
            def = q + 2;
            const char *e = strchr(def, '}');
            q = e ? e : def + strlen(def);
            dlen = (size_t)(q - def);
        }
        if (!nlen || *q != '}' || nlen > 255) {
            rc = cfg_err(x, "'%s': %s '${' in '%.80s' (write ${NAME} or ${NAME:-default}, or $${ for a literal ${)",
                         x->subject, strchr(p, '}') ? "bad" : "unterminated", s);
            break;
        }
        char nm[256];
        memcpy(nm, name, nlen);
        nm[nlen] = 0;
        const char *v = getenv(nm);
        if (def && (!v || !*v)) rc = dfm_buf_append(&b, def, dlen);
        else if (!v)
            rc = cfg_err(x, "'%s': environment variable '%s' is not set (write ${%s:-default} to give a default)",
                         x->subject, nm, nm);
        else rc = dfm_buf_append(&b, v, strlen(v));
        p = q + 1;
    }
    if (!rc) rc = dfm_buf_append(&b, "", 1);
    if (!rc && !dfm_utf8_valid((const char *)b.data, b.len - 1))
        rc = cfg_err(x, "'%s': value is not valid UTF-8", x->subject);
    if (rc) {
        dfm_buf_free(&b);
        return rc;
    }
    *out = (char *)dfm_buf_take(&b, NULL);
    return 0;
}

/* The text of a scalar node after interpolation (malloc'd). */
static int node_text(const yaml_node_t *nd, const cfg_ctx *x, char **out)
{
    const char *s = (const char *)nd->data.scalar.value;
    if (strlen(s) != nd->data.scalar.length)
        return cfg_err(x, "'%s': value contains a NUL byte", x->subject);
    return interpolate(s, x, out);
}

static const char *type_want(const dfm_cfg_key *k, char *buf, size_t cap)
{
    switch (k->type) {
    case DFM_CFG_INT: return "an integer";
    case DFM_CFG_FLOAT: return "a number";
    case DFM_CFG_BOOL: return "true or false";
    case DFM_CFG_STR: return "a string";
    case DFM_CFG_ENUM: snprintf(buf, cap, "one of %s", k->choices); return buf;
    case DFM_CFG_STRLIST: return "a string or a list of strings";
    case DFM_CFG_FLOATLIST: return "a list of numbers";
    }
    return "?";
}

static const char *node_kind(const yaml_node_t *nd)
{
    return nd->type == YAML_SEQUENCE_NODE ? "a list" : nd->type == YAML_MAPPING_NODE ? "a mapping"
                                                                                       : "a scalar";
}

/* Convert scalar text to the key's type into nv (INT, FLOAT, BOOL, STR, ENUM). Takes text. */
static int convert_scalar(const dfm_cfg_key *k, char *text, const cfg_ctx *x, cfg_val *nv)
{
    char want[600], hint[160];
    int rc = 0;
    switch (k->type) {
    case DFM_CFG_INT: {
        int r = parse_int(text, &nv->i);
        if (r == -2) rc = cfg_err(x, "'%s' is out of range for an integer: '%.80s'", x->subject, text);
        else if (r) rc = cfg_err(x, "'%s' must be an integer, not '%.80s'", x->subject, text);
        break;
    }
    case DFM_CFG_FLOAT:
        if (parse_float(text, &nv->f)) {
            char *e;
            double t = strtod(text, &e);
            int nonfinite = (e != text && !*e && !isfinite(t)) || strcasestr(text, ".inf") ||
                            strcasestr(text, ".nan");
            rc = cfg_err(x, "'%s' must be a number, not '%.80s'%s", x->subject, text,
                         nonfinite ? " (finite numbers only)" : "");
        }
        break;
    case DFM_CFG_BOOL:
        if (parse_bool(text, &nv->b))
            rc = cfg_err(x, "'%s' must be true or false (or yes/no, on/off), not '%.80s'", x->subject, text);
        break;
    case DFM_CFG_ENUM:
        if (!in_choices(k->choices, text)) {
            suggest_choice(k->choices, text, hint, sizeof hint);
            rc = cfg_err(x, "'%s' must be %s, not '%.80s'%s", x->subject,
                         type_want(k, want, sizeof want), text, hint);
            break;
        }
        nv->s = text;
        text = NULL;
        break;
    case DFM_CFG_STR:
        nv->s = text;
        text = NULL;
        break;
    default: DFM_ASSERT(0);
    }
    free(text);
    if (!rc) nv->has = 1;
    return rc;
}

/* One list element (a scalar node) into nv's list at position nv->n. */
static int list_push(const dfm_cfg_key *k, const yaml_node_t *el, int idx, const cfg_ctx *x,
                     cfg_val *nv)
{
    int strl = k->type == DFM_CFG_STRLIST;
    if (el->type != YAML_SCALAR_NODE)
        return cfg_err(x, "'%s'[%d] must be %s, not %s", x->subject, idx,
                       strl ? "a string" : "a number", node_kind(el));
    if (is_null_node(el))
        return cfg_err(x, "'%s'[%d] is null; a list holds %s", x->subject, idx,
                       strl ? "strings" : "numbers");
    char *t;
    int rc = node_text(el, x, &t);
    if (rc) return rc;
    if (strl) {
        nv->sl[nv->n++] = t;
        return 0;
    }
    double f;
    if (parse_float(t, &f)) {
        rc = cfg_err(x, "'%s'[%d] must be a number, not '%.80s'", x->subject, idx, t);
        free(t);
        return rc;
    }
    free(t);
    nv->fl[nv->n++] = f;
    return 0;
}

/* Assign node (NULL: null) to key idx, replacing *dst only on success. */
static int assign_node(const dfm_config *c, int idx, yaml_document_t *doc, yaml_node_t *nd,
                       const cfg_ctx *x, cfg_val *dst)
{
    const dfm_cfg_key *k = &c->schema[idx];
    cfg_val nv = {0};
    char want[600];
    int rc = 0;
    if (!nd || is_null_node(nd)) {
        int nullable = !k->def || k->type == DFM_CFG_STR || k->type == DFM_CFG_STRLIST ||
                       k->type == DFM_CFG_FLOATLIST;
        if (!nullable)
            rc = cfg_err(x, "'%s' must be %s, not null (only keys without a default can be null)",
                         x->subject, type_want(k, want, sizeof want));
    } else if (k->type == DFM_CFG_STRLIST || k->type == DFM_CFG_FLOATLIST) {
        if (nd->type == YAML_MAPPING_NODE ||
            (nd->type == YAML_SCALAR_NODE && k->type == DFM_CFG_FLOATLIST)) {
            if (nd->type == YAML_SCALAR_NODE)
                rc = cfg_err(x, "'%s' must be a list of numbers such as [0.9, 0.999], not '%.80s'",
                             x->subject, (const char *)nd->data.scalar.value);
            else rc = cfg_err(x, "'%s' must be %s, not a mapping", x->subject, type_want(k, want, sizeof want));
        } else {
            size_t cnt = nd->type == YAML_SCALAR_NODE
                             ? 1
                             : (size_t)(nd->data.sequence.items.top - nd->data.sequence.items.start);
            if (cnt > (1u << 24)) rc = cfg_err(x, "'%s': list too long", x->subject);
            else if (k->type == DFM_CFG_STRLIST) rc = (nv.sl = dfm_calloc(cnt + 1, sizeof *nv.sl)) ? 0 : DFM_E_NOMEM;
            else rc = (nv.fl = dfm_calloc(cnt + 1, sizeof *nv.fl)) ? 0 : DFM_E_NOMEM;
            if (!rc && nd->type == YAML_SCALAR_NODE) rc = list_push(k, nd, 0, x, &nv);
            for (size_t i = 0; !rc && nd->type == YAML_SEQUENCE_NODE && i < cnt; i++) {
                yaml_node_t *el = yaml_document_get_node(doc, nd->data.sequence.items.start[i]);
                rc = el ? list_push(k, el, (int)i, x, &nv) : DFM_E_FORMAT;
            }
            nv.has = !rc;
        }
    } else if (nd->type != YAML_SCALAR_NODE) {
        rc = cfg_err(x, "'%s' must be %s, not %s", x->subject, type_want(k, want, sizeof want), node_kind(nd));
    } else {
        char *t;
        rc = node_text(nd, x, &t);
        if (!rc) rc = convert_scalar(k, t, x, &nv);
    }
    if (!rc && !(nv.origin = dfm_strdup(x->origin))) rc = DFM_E_NOMEM;
    if (rc) {
        val_clear(&nv);
        return rc;
    }
    nv.given = x->given;
    val_clear(dst);
    *dst = nv;
    return 0;
}

/* ---- YAML documents ---- */

/* Parse text into *doc (exactly one document; *doc has no root when the text is empty). */
static int yaml_parse(const char *text, size_t len, const cfg_ctx *x, int is_file,
                      yaml_document_t *doc)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return dfm_fail(DFM_E_NOMEM, "out of memory (libyaml)");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int ok = yaml_parser_load(&p, doc), rc = 0;
    if (ok) {
        yaml_document_t more;
        if (!yaml_parser_load(&p, &more)) ok = 0;
        else {
            int extra = yaml_document_get_root_node(&more) != NULL;
            size_t line = more.start_mark.line + 1;
            yaml_document_delete(&more);
            if (extra) {
                yaml_document_delete(doc);
                yaml_parser_delete(&p);
                if (is_file) return dfm_fail(DFM_E_ARG, "%s:%zu: a second YAML document ('---'); a config is one mapping", x->where, line);
                return cfg_err(x, "'%s': value '%.80s' holds more than one YAML document", x->subject, text);
            }
        }
        if (!ok) yaml_document_delete(doc);
    }
    if (!ok) {
        if (p.error == YAML_MEMORY_ERROR) rc = dfm_fail(DFM_E_NOMEM, "out of memory (libyaml)");
        else {
            const char *problem = p.problem ? p.problem : "malformed YAML";
            size_t line = p.problem_mark.line + 1, col = p.problem_mark.column + 1;
            /* a tab on the offending line is the usual cause of "cannot start any token" */
            const char *ls = text, *end = text + len;
            for (size_t l = 1; l < line && ls < end; ls++)
                if (*ls == '\n') l++;
            const char *le = memchr(ls, '\n', (size_t)(end - ls));
            size_t ll = (size_t)((le ? le : end) - ls);
            const char *hint = memchr(ls, '\t', ll) ? "; a tab: YAML indents with spaces only"
                               : memmem(ls, ll, "${", 2) ? "; quote values that hold ${...}"
                                                         : "";
            char ctx[160] = "";
            if (p.context)
                snprintf(ctx, sizeof ctx, " (%s at line %zu)", p.context, p.context_mark.line + 1);
            if (is_file)
                rc = dfm_fail(DFM_E_ARG, "%s:%zu:%zu: bad YAML: %s%s%s", x->where, line, col, problem, ctx, hint);
            else if (line == 1)
                rc = cfg_err(x, "'%s': value '%.80s' is not valid YAML: %s at column %zu%s", x->subject, text, problem, col, hint);
            else
                rc = cfg_err(x, "'%s': value '%.80s' is not valid YAML: %s%s", x->subject, text, problem, hint);
        }
    }
    yaml_parser_delete(&p);
    return rc;
}

/* Apply a value given as text (command line or schema default). Literal: STR/ENUM text is
 * taken as it is (only "null" and "~" are null). */
static int assign_text(const dfm_config *c, int idx, const char *text, const cfg_ctx *x,
                       int literal, cfg_val *dst)
{
    const dfm_cfg_key *k = &c->schema[idx];
    if (!text) return assign_node(c, idx, NULL, NULL, x, dst);
    if (literal && (k->type == DFM_CFG_STR || k->type == DFM_CFG_ENUM) &&
        strcmp(text, "null") && strcmp(text, "~")) {
        char *t;
        cfg_val nv = {0};
        int rc = interpolate(text, x, &t);
        if (!rc) rc = convert_scalar(k, t, x, &nv);
        if (!rc && !(nv.origin = dfm_strdup(x->origin))) rc = DFM_E_NOMEM;
        if (rc) {
            val_clear(&nv);
            return rc;
        }
        nv.given = x->given;
        val_clear(dst);
        *dst = nv;
        return 0;
    }
    yaml_document_t doc;
    int rc = yaml_parse(text, strlen(text), x, 0, &doc);
    if (rc) return rc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE && k->type == DFM_CFG_STR)
        rc = cfg_err(x, "'%s': YAML reads '%.80s' as a mapping; quote it", x->subject, text);
    else rc = assign_node(c, idx, &doc, root, x, dst);
    yaml_document_delete(&doc);
    return rc;
}

/* ---- loading a file ---- */

typedef struct {
    const dfm_config *c;
    yaml_document_t *doc;
    const char *name;
    cfg_val *vals;
    size_t *seen; /* per key: the line that set it in this file, 0 if none */
} cfg_load;

static size_t line_of(const yaml_node_t *nd) { return nd->start_mark.line + 1; }

static const char *scalar_or_null(const yaml_node_t *nd)
{
    return nd && nd->type == YAML_SCALAR_NODE ? (const char *)nd->data.scalar.value : NULL;
}

/* Mapping keys must be scalars and appear once. Returns the key text or NULL (error set). */
static const char *map_key(cfg_load *L, yaml_node_pair_t *pairs, yaml_node_pair_t *pr, int *rc)
{
    yaml_node_t *kn = yaml_document_get_node(L->doc, pr->key);
    const char *ks = scalar_or_null(kn);
    if (!ks) {
        *rc = dfm_fail(DFM_E_ARG, "%s:%zu: a key must be a name, not %s", L->name,
                       kn ? line_of(kn) : 0, kn ? node_kind(kn) : "nothing");
        return NULL;
    }
    for (yaml_node_pair_t *q = pairs; q < pr; q++) {
        const char *qs = scalar_or_null(yaml_document_get_node(L->doc, q->key));
        if (qs && !strcmp(qs, ks)) {
            *rc = dfm_fail(DFM_E_ARG, "%s:%zu: duplicate key '%.100s' (first at line %zu)", L->name,
                           line_of(kn), ks, line_of(yaml_document_get_node(L->doc, q->key)));
            return NULL;
        }
    }
    if (!strcmp(ks, "<<")) {
        *rc = dfm_fail(DFM_E_ARG, "%s:%zu: merge keys ('<<') are not supported", L->name, line_of(kn));
        return NULL;
    }
    return ks;
}

static int load_key(cfg_load *L, int idx, yaml_node_t *kn, yaml_node_t *vn)
{
    const dfm_cfg_key *k = &L->c->schema[idx];
    size_t line = line_of(kn);
    if (L->seen[idx])
        return dfm_fail(DFM_E_ARG, "%s:%zu: duplicate key '%s' (first at line %zu)", L->name, line,
                        k->key, L->seen[idx]);
    L->seen[idx] = line;
    char where[1200];
    snprintf(where, sizeof where, "%s:%zu", L->name, line);
    cfg_ctx x = {where, where, k->key, 1};
    return assign_node(L->c, idx, L->doc, vn, &x, &L->vals[idx]);
}

static int load_section(cfg_load *L, const char *sec, yaml_node_t *vn)
{
    if (is_null_node(vn)) return 0; /* "optim:" with nothing under it */
    if (vn->type != YAML_MAPPING_NODE) {
        const char *s = scalar_or_null(vn);
        return dfm_fail(DFM_E_ARG, "%s:%zu: '%s' is a section: it must be a mapping of keys, not %s%.80s%s",
                        L->name, line_of(vn), sec, s ? "'" : node_kind(vn), s ? s : "", s ? "'" : "");
    }
    yaml_node_pair_t *pairs = vn->data.mapping.pairs.start;
    for (yaml_node_pair_t *pr = pairs; pr < vn->data.mapping.pairs.top; pr++) {
        int rc = 0;
        const char *ks = map_key(L, pairs, pr, &rc);
        if (!ks) return rc;
        yaml_node_t *kn = yaml_document_get_node(L->doc, pr->key);
        char full[600], hint[400];
        snprintf(full, sizeof full, "%s.%.300s", sec, ks);
        int idx = strchr(ks, '.') ? -1 : find_key(L->c, full);
        if (idx < 0) {
            suggest(L->c, full, "", hint, sizeof hint);
            return dfm_fail(DFM_E_ARG, "%s:%zu: unknown key '%s'%s", L->name, line_of(kn), full, hint);
        }
        rc = load_key(L, idx, kn, yaml_document_get_node(L->doc, pr->value));
        if (rc) return rc;
    }
    return 0;
}

static int load_root(cfg_load *L, yaml_node_t *root)
{
    if (root->type != YAML_MAPPING_NODE) {
        const char *s = scalar_or_null(root);
        return dfm_fail(DFM_E_ARG, "%s:%zu: the top level must be a mapping of sections and keys, not %s%.80s%s",
                        L->name, line_of(root), s ? "'" : node_kind(root), s ? s : "", s ? "'" : "");
    }
    yaml_node_pair_t *pairs = root->data.mapping.pairs.start;
    for (yaml_node_pair_t *pr = pairs; pr < root->data.mapping.pairs.top; pr++) {
        int rc = 0;
        const char *ks = map_key(L, pairs, pr, &rc);
        if (!ks) return rc;
        yaml_node_t *kn = yaml_document_get_node(L->doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, pr->value);
        int idx = find_key(L->c, ks);
        if (idx >= 0) rc = load_key(L, idx, kn, vn);
        else if (!strchr(ks, '.') && is_section(L->c, ks, strlen(ks))) rc = load_section(L, ks, vn);
        else {
            char hint[400];
            suggest(L->c, ks, "", hint, sizeof hint);
            rc = dfm_fail(DFM_E_ARG, "%s:%zu: unknown %s '%.100s'%s", L->name, line_of(kn),
                          vn && vn->type == YAML_MAPPING_NODE ? "section" : "key", ks, hint);
        }
        if (rc) return rc;
    }
    return 0;
}

int dfm_config_load_string(dfm_config *c, const char *yaml, const char *name)
{
    if (!name) name = "<string>";
    cfg_ctx x = {name, name, "", 1};
    yaml_document_t doc;
    int rc = yaml_parse(yaml, strlen(yaml), &x, 1, &doc);
    if (rc) return rc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    cfg_val *vals = NULL;
    size_t *seen = NULL;
    if (root) {
        vals = vals_clone(c->v, c->n);
        seen = dfm_calloc((size_t)c->n + 1, sizeof *seen);
        if (!vals || !seen) rc = DFM_E_NOMEM;
        else {
            cfg_load L = {c, &doc, name, vals, seen};
            rc = load_root(&L, root);
        }
        if (!rc) {
            vals_free(c->v, c->n);
            c->v = vals;
            vals = NULL;
        }
    }
    vals_free(vals, c->n);
    free(seen);
    yaml_document_delete(&doc);
    return rc;
}

int dfm_config_load_file(dfm_config *c, const char *path)
{
    dfm_buf b = {0};
    int rc = dfm_read_file(path, CFG_MAX_FILE, &b);
    if (!rc) rc = dfm_buf_append(&b, "", 1);
    if (!rc && strlen((const char *)b.data) != b.len - 1)
        rc = dfm_fail(DFM_E_ARG, "%s: a NUL byte: not a YAML text file", path);
    if (!rc) rc = dfm_config_load_string(c, (const char *)b.data, path);
    dfm_buf_free(&b);
    return rc;
}

/* ---- schema ---- */

static int key_name_ok(const char *k)
{
    int dots = 0;
    if (!k || !*k || *k == '.') return 0;
    for (const char *p = k; *p; p++) {
        if (*p == '.') {
            if (++dots > 1 || !p[1]) return 0;
        } else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                     *p == '_' || *p == '-'))
            return 0;
    }
    return 1;
}

int dfm_config_new(dfm_config **out, const dfm_cfg_key *schema, int n)
{
    *out = NULL;
    if (n < 0 || (n && !schema)) return dfm_fail(DFM_E_ARG, "config schema: %d keys", n);
    for (int i = 0; i < n; i++) {
        const dfm_cfg_key *k = &schema[i];
        if (!key_name_ok(k->key))
            return dfm_fail(DFM_E_ARG, "config schema: bad key '%s' (want name or section.name)",
                            k->key ? k->key : "(null)");
        if ((unsigned)k->type > DFM_CFG_FLOATLIST)
            return dfm_fail(DFM_E_ARG, "config schema: '%s' has an unknown type", k->key);
        if ((k->type == DFM_CFG_ENUM) != (k->choices != NULL) ||
            (k->choices && (!*k->choices || strstr(k->choices, "||") || *k->choices == '|' ||
                            k->choices[strlen(k->choices) - 1] == '|')))
            return dfm_fail(DFM_E_ARG, "config schema: '%s': choices belong to ENUM keys, as \"a|b|c\"", k->key);
        for (int j = 0; j < i; j++)
            if (!strcmp(schema[j].key, k->key))
                return dfm_fail(DFM_E_ARG, "config schema: key '%s' twice", k->key);
    }
    dfm_config *c = dfm_calloc(1, sizeof *c);
    if (!c) return DFM_E_NOMEM;
    c->schema = schema;
    c->n = n;
    for (int i = 0; i < n; i++)
        if (!strchr(schema[i].key, '.') && is_section(c, schema[i].key, strlen(schema[i].key))) {
            free(c);
            return dfm_fail(DFM_E_ARG, "config schema: '%s' is both a key and a section", schema[i].key);
        }
    c->v = dfm_calloc((size_t)n + 1, sizeof *c->v);
    if (!c->v) {
        free(c);
        return DFM_E_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        cfg_ctx x = {"config schema", "default", schema[i].key, 0};
        int rc = assign_text(c, i, schema[i].def, &x, 0, &c->v[i]);
        if (rc) {
            dfm_config_free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void dfm_config_free(dfm_config *c)
{
    if (!c) return;
    vals_free(c->v, c->n);
    free(c);
}

/* ---- command line ---- */

int dfm_config_set(dfm_config *c, const char *key, const char *value, const char *origin)
{
    const char *prefix = strncmp(key, "--", 2) ? "" : "--";
    const char *k = key + strlen(prefix);
    if (!origin) origin = "command line";
    cfg_ctx x = {origin, origin, key, 1};
    int idx = find_key(c, k);
    if (idx < 0) {
        char hint[400];
        suggest(c, k, prefix, hint, sizeof hint);
        return cfg_err(&x, "unknown key '%.200s'%s", key, hint);
    }
    return assign_text(c, idx, value, &x, 1, &c->v[idx]);
}

int dfm_config_parse_args(dfm_config *c, int *argc, char **argv)
{
    int n = *argc, kept = 0, used = 0, rc = 0, i = 0;
    char **keep = dfm_calloc((size_t)n + 1, sizeof *keep);
    if (!keep) return DFM_E_NOMEM;
    if (n > 0) keep[kept++] = argv[i++];
    for (; i < n && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) break;
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a + 2, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        if (strncmp(a, "--", 2) || !memchr(a + 2, '.', klen - 2)) {
            keep[kept++] = argv[i];
            continue;
        }
        char *key = dfm_strndup(a, klen);
        if (!key) {
            rc = DFM_E_NOMEM;
            break;
        }
        const char *val = NULL;
        int took = 1;
        if (eq) val = eq + 1;
        else if (i + 1 < n && strncmp(argv[i + 1], "--", 2)) val = argv[i + 1], took = 2;
        else {
            int idx = find_key(c, key + 2);
            if (idx >= 0 && c->schema[idx].type == DFM_CFG_BOOL) val = "true";
            else if (idx >= 0) {
                cfg_ctx x = {"command line", "", key, 1};
                rc = cfg_err(&x, "'%s' needs a value", key);
            }
        }
        if (!rc) rc = dfm_config_set(c, key, val, "command line");
        free(key);
        i += took - 1;
        used += took;
    }
    for (; !rc && i < n; i++) keep[kept++] = argv[i];
    if (!rc) {
        memcpy(argv, keep, (size_t)kept * sizeof *argv);
        argv[kept] = NULL;
        *argc = kept;
    }
    free(keep);
    return rc ? rc : used;
}

/* ---- getters ---- */

#define ANY_TYPE 0x7F
/* The index of key, whose type must be in the bit mask `types`; else a programmer error. */
static int get_idx(const dfm_config *c, const char *key, int types)
{
    int idx = find_key(c, key);
    if (idx < 0 || !(types & (1 << c->schema[idx].type))) {
        fprintf(stderr, "dfm: internal error: config key '%s' %s\n", key,
                idx < 0 ? "is not in the schema" : "read with a getter of another type");
        dfm_assert_fail("config key of the getter's type", __FILE__, __LINE__);
    }
    return idx;
}

static const cfg_val *get(const dfm_config *c, const char *key, int t1, int t2)
{
    return &c->v[get_idx(c, key, 1 << t1 | (t2 >= 0 ? 1 << t2 : 0))];
}

int64_t dfm_config_int(const dfm_config *c, const char *key)
{
    const cfg_val *v = get(c, key, DFM_CFG_INT, -1);
    return v->has ? v->i : 0;
}

double dfm_config_float(const dfm_config *c, const char *key)
{
    const cfg_val *v = get(c, key, DFM_CFG_FLOAT, -1);
    return v->has ? v->f : 0;
}

int dfm_config_bool(const dfm_config *c, const char *key)
{
    const cfg_val *v = get(c, key, DFM_CFG_BOOL, -1);
    return v->has ? v->b : 0;
}

const char *dfm_config_str(const dfm_config *c, const char *key)
{
    const cfg_val *v = get(c, key, DFM_CFG_STR, DFM_CFG_ENUM);
    return v->has ? v->s : NULL;
}

int dfm_config_list_len(const dfm_config *c, const char *key)
{
    const cfg_val *v = get(c, key, DFM_CFG_STRLIST, DFM_CFG_FLOATLIST);
    return v->has ? v->n : 0;
}

const char *dfm_config_list_str(const dfm_config *c, const char *key, int i)
{
    const cfg_val *v = get(c, key, DFM_CFG_STRLIST, -1);
    DFM_ASSERT(v->has && i >= 0 && i < v->n);
    return v->sl[i];
}

double dfm_config_list_float(const dfm_config *c, const char *key, int i)
{
    const cfg_val *v = get(c, key, DFM_CFG_FLOATLIST, -1);
    DFM_ASSERT(v->has && i >= 0 && i < v->n);
    return v->fl[i];
}

int dfm_config_has(const dfm_config *c, const char *key) { return c->v[get_idx(c, key, ANY_TYPE)].has; }
int dfm_config_is_set(const dfm_config *c, const char *key) { return c->v[get_idx(c, key, ANY_TYPE)].given; }
const char *dfm_config_origin(const dfm_config *c, const char *key)
{
    return c->v[get_idx(c, key, ANY_TYPE)].origin;
}

/* ---- writing ---- */

/* Shortest %g text that reads back to x, with a '.' so YAML 1.1 readers see a float. */
static void fmt_float(double x, char *out, size_t cap)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, x);
        if (strtod(out, NULL) == x) break;
    }
    if (!strchr(out, '.')) {
        char *e = strchr(out, 'e');
        size_t at = e ? (size_t)(e - out) : strlen(out);
        memmove(out + at + 2, out + at, strlen(out + at) + 1);
        memcpy(out + at, ".0", 2);
    }
}

/* A double-quoted YAML scalar that reads back (through interpolation) to s: escapes for '"',
 * '\', control and non-printable characters and YAML line breaks; "${" written "$${". */
static int put_quoted(dfm_buf *b, const char *s)
{
    int rc = dfm_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p && !rc;) {
        if (p[0] == '$' && p[1] == '{') {
            rc = dfm_buf_append(b, "$", 1);
        }
        int len = dfm_utf8_len(p);
        uint32_t cp = p[0];
        if (len == 2) cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
        else if (len == 3) cp = (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
        else if (len == 4)
            cp = (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 |
                 (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
        else if (len == 0) len = 1; /* not reached: values are checked UTF-8 */
        int printable = (cp >= 0x20 && cp <= 0x7E && cp != '"' && cp != '\\') ||
                        (cp >= 0xA0 && cp <= 0xD7FF && cp != 0x2028 && cp != 0x2029) ||
                        (cp >= 0xE000 && cp <= 0xFFFD && cp != 0xFEFF) || cp >= 0x10000;
        if (printable) rc = dfm_buf_append(b, p, (size_t)len);
        else if (cp == '"') rc = dfm_buf_append(b, "\\\"", 2);
        else if (cp == '\\') rc = dfm_buf_append(b, "\\\\", 2);
        else if (cp == '\n') rc = dfm_buf_append(b, "\\n", 2);
        else if (cp == '\t') rc = dfm_buf_append(b, "\\t", 2);
        else if (cp < 0x100) rc = dfm_buf_printf(b, "\\x%02X", (unsigned)cp);
        else rc = dfm_buf_printf(b, "\\u%04X", (unsigned)cp);
        p += len;
    }
    return rc ? rc : dfm_buf_append(b, "\"", 1);
}

static int put_value(dfm_buf *b, const dfm_cfg_key *k, const cfg_val *v)
{
    char num[64];
    if (!v->has) return dfm_buf_append(b, "null", 4);
    switch (k->type) {
    case DFM_CFG_INT: return dfm_buf_printf(b, "%lld", (long long)v->i);
    case DFM_CFG_FLOAT: fmt_float(v->f, num, sizeof num); return dfm_buf_printf(b, "%s", num);
    case DFM_CFG_BOOL: return dfm_buf_printf(b, "%s", v->b ? "true" : "false");
    case DFM_CFG_ENUM: {
        int plain = !is_null_word(v->s) && strchr("-.", v->s[0]) == NULL;
        for (const char *p = v->s; *p && plain; p++)
            plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    *p == '_' || *p == '-' || *p == '.';
        if (plain) return dfm_buf_printf(b, "%s", v->s);
        return put_quoted(b, v->s);
    }
    case DFM_CFG_STR: return put_quoted(b, v->s);
    case DFM_CFG_STRLIST:
    case DFM_CFG_FLOATLIST: {
        int rc = dfm_buf_append(b, "[", 1);
        for (int i = 0; i < v->n && !rc; i++) {
            if (i) rc = dfm_buf_append(b, ", ", 2);
            if (rc) break;
            if (k->type == DFM_CFG_STRLIST) rc = put_quoted(b, v->sl[i]);
            else {
                fmt_float(v->fl[i], num, sizeof num);
                rc = dfm_buf_printf(b, "%s", num);
            }
        }
        return rc ? rc : dfm_buf_append(b, "]", 1);
    }
    }
    return 0;
}

char *dfm_config_value_text(const dfm_config *c, const char *key)
{
    int idx = get_idx(c, key, ANY_TYPE);
    dfm_buf b = {0};
    if (put_value(&b, &c->schema[idx], &c->v[idx]) || dfm_buf_append(&b, "", 1)) {
        dfm_buf_free(&b);
        return NULL;
    }
    return (char *)dfm_buf_take(&b, NULL);
}

static int put_line(dfm_buf *b, const dfm_config *c, int i, int indent, const char *name)
{
    const dfm_cfg_key *k = &c->schema[i];
    int rc = dfm_buf_printf(b, "%s%s: ", indent ? "  " : "", name);
    if (!rc) rc = put_value(b, k, &c->v[i]);
    if (!rc && k->doc && *k->doc) {
        rc = dfm_buf_append(b, "  # ", 4);
        for (const char *p = k->doc; *p && !rc; p++)
            rc = dfm_buf_append(b, (unsigned char)*p < 0x20 ? " " : p, 1);
    }
    return rc ? rc : dfm_buf_append(b, "\n", 1);
}

static int write_buf(const dfm_config *c, dfm_buf *b)
{
    char *done = dfm_calloc((size_t)c->n + 1, 1);
    if (!done) return DFM_E_NOMEM;
    int rc = 0;
    for (int i = 0; i < c->n && !rc; i++) {
        if (done[i]) continue;
        const char *key = c->schema[i].key, *dot = strchr(key, '.');
        if (!dot) {
            rc = put_line(b, c, i, 0, key);
            done[i] = 1;
            continue;
        }
        size_t sl = (size_t)(dot - key) + 1;
        rc = dfm_buf_printf(b, "%.*s:\n", (int)sl - 1, key);
        for (int j = i; j < c->n && !rc; j++)
            if (!done[j] && !strncmp(c->schema[j].key, key, sl)) {
                rc = put_line(b, c, j, 1, c->schema[j].key + sl);
                done[j] = 1;
            }
    }
    free(done);
    return rc;
}

int dfm_config_write(const dfm_config *c, FILE *f)
{
    dfm_buf b = {0};
    int rc = write_buf(c, &b);
    if (!rc && b.len && (fwrite(b.data, 1, b.len, f) != b.len || fflush(f)))
        rc = dfm_fail(DFM_E_IO, "cannot write the config: %s", strerror(errno));
    dfm_buf_free(&b);
    return rc;
}

int dfm_config_save(const dfm_config *c, const char *path)
{
    dfm_buf b = {0};
    int rc = write_buf(c, &b);
    if (!rc) rc = dfm_write_file_atomic(path, b.data ? (const void *)b.data : "", b.len);
    dfm_buf_free(&b);
    return rc;
}

int dfm_config_diff(const dfm_config *a, const dfm_config *b,
                    void (*fn)(void *ctx, const char *key, const char *va, const char *vb),
                    void *ctx)
{
    if (a->schema != b->schema || a->n != b->n)
        return dfm_fail(DFM_E_ARG, "config diff: the two configs have different schemas");
    int count = 0;
    for (int i = 0; i < a->n; i++) {
        dfm_buf ta = {0}, tb = {0};
        const dfm_cfg_key *k = &a->schema[i];
        if (put_value(&ta, k, &a->v[i]) || dfm_buf_append(&ta, "", 1) || put_value(&tb, k, &b->v[i]) ||
            dfm_buf_append(&tb, "", 1)) {
            dfm_buf_free(&ta);
            dfm_buf_free(&tb);
            return DFM_E_NOMEM;
        }
        if (strcmp((char *)ta.data, (char *)tb.data)) {
            count++;
            if (fn) fn(ctx, k->key, (char *)ta.data, (char *)tb.data);
        }
        dfm_buf_free(&ta);
        dfm_buf_free(&tb);
    }
    return count;
}

void dfm_config_help(const dfm_cfg_key *schema, int n, FILE *f)
{
    static const char *const names[] = {"int", "float", "bool", "string", "enum", "string list", "float list"};
    for (int i = 0; i < n; i++) {
        const dfm_cfg_key *k = &schema[i];
        int t = (unsigned)k->type <= DFM_CFG_FLOATLIST ? (int)k->type : 0;
        if (k->type == DFM_CFG_ENUM && k->choices) fprintf(f, "  %s (one of %s", k->key, k->choices);
        else fprintf(f, "  %s (%s", k->key, names[t]);
        if (k->def) fprintf(f, ", default %s)\n", k->def);
        else fprintf(f, ", no default)\n");
        if (k->doc && *k->doc) fprintf(f, "      %s\n", k->doc);
    }
}
