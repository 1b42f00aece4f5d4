/* prompts.c — musubi-tuner's prompt-file syntax (prompts.h). */
#include "sample/prompts.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"

void dfm_prompts_free(dfm_prompt_list *l)
{
    if (!l) return;
    free(l->req);
    free(l->line);
    free(l->text);
    memset(l, 0, sizeof *l);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
    char *e;
    errno = 0;
    long x = strtol(v, &e, 10);
    if (e == v || *e || errno || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

static int parse_num(const char *v, double *out)
{
    char *e;
    double x = strtod(v, &e);
    if (e == v || *e || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

/* one line (modified in place) into r */
static int parse_line(char *s, dfm_sample_request *r, const char *path, int ln)
{
    /* the prompt runs up to the first " --x" option */
    char *opt = strstr(s, " --");
    if (!strncmp(s, "--", 2)) opt = s;
    if (opt) *opt = 0;
    r->prompt = trim(s);
    if (!*r->prompt) return dfm_fail(DFM_E_ARG, "%s:%d: no prompt before the options", path, ln);
    char *p = opt ? opt + 1 : NULL;
    if (opt == s) p = s; /* handled above: empty prompt */
    while (p && *p) {
        p = trim(p);
        if (!*p) break;
        if (strncmp(p, "--", 2)) return dfm_fail(DFM_E_ARG, "%s:%d: expected an option, found '%.20s'", path, ln, p);
        char *name = p + 2, *val = name + strcspn(name, " \t");
        if (*val) *val++ = 0;
        char *next = strstr(val, " --");
        if (!strncmp(val, "--", 2)) next = val - 1;
        if (next && next >= val) *next = 0;
        char *v = trim(val);
        long iv = 0;
        double dv = 0;
        int bad = 0;
        if (!strcmp(name, "w")) bad = parse_int(v, 16, 16384, &iv), r->width = (int)iv;
        else if (!strcmp(name, "h")) bad = parse_int(v, 16, 16384, &iv), r->height = (int)iv;
        else if (!strcmp(name, "f")) bad = parse_int(v, 1, 100000, &iv), r->frames = (int)iv;
        else if (!strcmp(name, "s")) bad = parse_int(v, 1, 10000, &iv), r->steps = (int)iv;
        else if (!strcmp(name, "d")) {
            char *e;
            errno = 0;
            unsigned long long u = strtoull(v, &e, 10);
            bad = e == v || *e || errno || v[0] == '-';
            r->seed = u;
        } else if (!strcmp(name, "g")) bad = parse_num(v, &dv) || dv < 0, r->guidance = dv;
        else if (!strcmp(name, "fs")) bad = parse_num(v, &dv) || dv <= 0, r->shift = dv;
        else if (!strcmp(name, "n")) r->negative = v;
        else return dfm_fail(DFM_E_ARG, "%s:%d: unknown option '--%s' (--w --h --f --d --s --g --fs --n)", path, ln, name);
        if (bad) return dfm_fail(DFM_E_ARG, "%s:%d: --%s '%s' is not a valid value", path, ln, name, v);
        p = next ? next + 1 : NULL;
    }
    return 0;
}

int dfm_prompts_load(dfm_prompt_list *l, const char *path, const dfm_sample_request *defaults)
{
    memset(l, 0, sizeof *l);
    dfm_buf b = {0};
    int rc = dfm_read_file(path, 16 << 20, &b);
    if (rc < 0) return rc;
    l->text = malloc(b.len + 1);
    if (!l->text) {
        dfm_buf_free(&b);
        return dfm_fail(DFM_E_NOMEM, "out of memory");
    }
    size_t len = b.len;
    memcpy(l->text, b.data, len);
    l->text[len] = 0;
    dfm_buf_free(&b);
    if (strlen(l->text) != len) {
        dfm_prompts_free(l);
        return dfm_fail(DFM_E_FORMAT, "%s: a NUL byte in a text file", path);
    }
    int cap = 0, ln = 0;
    for (char *s = l->text, *e; s && *s; s = e) {
        e = strchr(s, '\n');
        if (e) *e++ = 0;
        ln++;
        char *t = trim(s);
        if (!*t || *t == '#') continue;
        if (l->n == cap) {
            cap = cap ? 2 * cap : 8;
            dfm_sample_request *nr = realloc(l->req, cap * sizeof *nr);
            int *nl = nr ? realloc(l->line, cap * sizeof *nl) : NULL;
            if (nr) l->req = nr;
            if (!nr || !nl) {
                dfm_prompts_free(l);
                return dfm_fail(DFM_E_NOMEM, "out of memory");
            }
            l->line = nl;
        }
        l->req[l->n] = *defaults;
        if ((rc = parse_line(t, &l->req[l->n], path, ln))) {
            dfm_prompts_free(l);
            return rc;
        }
        l->line[l->n++] = ln;
    }
    if (!l->n) {
        dfm_prompts_free(l);
        return dfm_fail(DFM_E_ARG, "%s: no prompt in it (one per line; '#' starts a comment)", path);
    }
    return 0;
}
