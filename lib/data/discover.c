/* discover.c — recursive, sorted walks that find media files (see discover.h).
 *
 * Deterministic order: each directory is read whole, its visible names sorted with strcmp and
 * visited in that order, sub-directories recursed into where they fall. Symlinks are followed
 * (stat, not lstat); the (st_dev, st_ino) of every directory on the current path is kept so a
 * link back to an ancestor is reported once and skipped instead of looping.
 * Not here: captions, decoding, and any filtering beyond the extension.
 */
#include "data/discover.h"
#include "base/buf.h"
#include "base/error.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static const char *const image_exts[] = {"jpg", "jpeg", "png", "webp", "bmp"};
static const char *const video_exts[] = {"mp4", "avi", "mov", "mkv", "webm"};

dfm_media_kind dfm_media_kind_of(const char *path)
{
    if (!path) return DFM_MEDIA_NONE;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) return DFM_MEDIA_NONE; /* no extension, or a bare ".jpg" */
    const char *ext = dot + 1;
    for (size_t i = 0; i < sizeof image_exts / sizeof image_exts[0]; i++)
        if (!strcasecmp(ext, image_exts[i])) return DFM_MEDIA_IMAGE;
    for (size_t i = 0; i < sizeof video_exts / sizeof video_exts[0]; i++)
        if (!strcasecmp(ext, video_exts[i])) return DFM_MEDIA_VIDEO;
    return DFM_MEDIA_NONE;
}

const char *dfm_media_kind_name(dfm_media_kind k)
{
    switch (k) {
    case DFM_MEDIA_IMAGE: return "image";
    case DFM_MEDIA_VIDEO: return "video";
    default: return "none";
    }
}

typedef struct {
    dev_t dev;
    ino_t ino;
} dir_id;

typedef struct {
    dfm_walk_fn fn;
    dfm_walk_warn_fn warn;
    void *ctx;
    dir_id *stack; /* directories on the current path, for cycle detection */
    int depth, cap;
} walker;

/* What a file that is neither a directory nor a regular file is, for messages. */
static const char *special_kind(mode_t m)
{
    return S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a regular file";
}

static void warn(walker *w, const char *path, const char *reason)
{
    if (w->warn) w->warn(w->ctx, path, reason);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read the visible names of a directory, sorted. Returns the count or a negative code. */
static int read_names(const char *path, char ***names_out)
{
    *names_out = NULL;
    DIR *d = opendir(path);
    if (!d) return dfm_fail(DFM_E_IO, "cannot open the directory: %s", strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno) rc = dfm_fail(DFM_E_IO, "cannot read the directory: %s", strerror(errno));
            break;
        }
        if (e->d_name[0] == '.') continue; /* hidden, and . and .. */
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = dfm_realloc(names, (size_t)cap * sizeof *names);
            if (!p) {
                rc = DFM_E_NOMEM;
                break;
            }
            names = p;
        }
        if (!(names[n] = dfm_strdup(e->d_name))) {
            rc = DFM_E_NOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        return rc;
    }
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_names);
    *names_out = names;
    return n;
}

static int push_dir(walker *w, const struct stat *st)
{
    if (w->depth == w->cap) {
        int cap = w->cap ? w->cap * 2 : 16;
        dir_id *p = dfm_realloc(w->stack, (size_t)cap * sizeof *p);
        if (!p) return DFM_E_NOMEM;
        w->stack = p;
        w->cap = cap;
    }
    w->stack[w->depth++] = (dir_id){st->st_dev, st->st_ino};
    return 0;
}

static int on_path(const walker *w, const struct stat *st)
{
    for (int i = 0; i < w->depth; i++)
        if (w->stack[i].dev == st->st_dev && w->stack[i].ino == st->st_ino) return 1;
    return 0;
}

/* Walk directory `path` (already pushed on the stack); `name` is its source name ("" for a root
 * without a usable basename). */
static int walk_dir(walker *w, const char *path, const char *name, int is_root)
{
    char **names;
    int n = read_names(path, &names);
    if (n < 0) {
        if (is_root || n == DFM_E_NOMEM) return n;
        warn(w, path, dfm_errmsg());
        return 0;
    }
    int rc = 0;
    dfm_buf p = {0}, nm = {0};
    for (int i = 0; i < n && rc == 0; i++) {
        p.len = nm.len = 0;
        int sep = path[0] && path[strlen(path) - 1] != '/';
        if ((rc = dfm_buf_printf(&p, "%s%s%s", path, sep ? "/" : "", names[i]))) break;
        if ((rc = dfm_buf_printf(&nm, "%s%s%s", name, name[0] ? "/" : "", names[i]))) break;
        const char *cp = (const char *)p.data, *cn = (const char *)nm.data;
        struct stat st;
        if (stat(cp, &st) != 0) {
            warn(w, cp, strerror(errno)); /* e.g. a dangling symlink */
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (on_path(w, &st)) {
                warn(w, cp, "directory cycle (a link back to a directory being walked); skipped");
                continue;
            }
            if ((rc = push_dir(w, &st))) break;
            rc = walk_dir(w, cp, cn, 0);
            w->depth--;
        } else {
            dfm_media_kind k = dfm_media_kind_of(names[i]);
            if (k != DFM_MEDIA_NONE && S_ISREG(st.st_mode)) rc = w->fn(w->ctx, cp, cn, k);
            else if (k != DFM_MEDIA_NONE) { /* never opened: a FIFO would block */
                char why[64];
                snprintf(why, sizeof why, "%s, not a regular file", special_kind(st.st_mode));
                warn(w, cp, why);
            }
        }
    }
    dfm_buf_free(&p);
    dfm_buf_free(&nm);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

/* The last component of `arg` with trailing slashes removed, or NULL for "", ".", "..", "/". */
static char *root_name(const char *arg)
{
    size_t len = strlen(arg);
    while (len > 1 && arg[len - 1] == '/') len--;
    size_t s = len;
    while (s > 0 && arg[s - 1] != '/') s--;
    size_t n = len - s;
    if (n == 0 || (n == 1 && arg[s] == '.') || (n == 2 && arg[s] == '.' && arg[s + 1] == '.'))
        return NULL;
    return dfm_strndup(arg + s, n);
}

/* The source name of a file argument: the path as given with leading "/", "./" and "../"
 * components dropped and repeated slashes collapsed, so `find vids -type f | dfm-decode -` names
 * files exactly as `dfm-decode vids` does. */
static char *file_name(const char *arg)
{
    char *out = dfm_malloc(strlen(arg) + 1), *o = out;
    if (!out) return NULL;
    const char *p = arg;
    for (;;) {
        while (*p == '/') p++;
        if (p[0] == '.' && (p[1] == '/' || (p[1] == '.' && p[2] == '/'))) {
            p += p[1] == '/' ? 2 : 3;
            continue;
        }
        break;
    }
    for (; *p; p++)
        if (!(*p == '/' && o > out && o[-1] == '/')) *o++ = *p;
    *o = 0;
    return out;
}

// ref: NeMo AutoModel preprocessing_multiprocess.py (sorted rglob of the media dir)
int dfm_walk(const char *arg, dfm_walk_fn fn, dfm_walk_warn_fn warn_fn, void *ctx)
{
    if (!arg || !*arg) return dfm_fail(DFM_E_ARG, "empty path");
    struct stat st;
    if (stat(arg, &st) != 0) return dfm_fail(DFM_E_IO, "%s", strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        dfm_media_kind k = dfm_media_kind_of(arg);
        if (k == DFM_MEDIA_NONE) return 0;
        if (!S_ISREG(st.st_mode))
            return dfm_fail(DFM_E_UNSUPPORTED, "%s, not a regular file; not opened", special_kind(st.st_mode));
        char *name = file_name(arg);
        if (!name) return DFM_E_NOMEM;
        int rc = fn(ctx, arg, name, k);
        free(name);
        return rc;
    }
    /* A directory: names are basename(D)/below. For ".", "..", "/" use the real path's last
     * component so the names still say where the files came from. */
    char *name = root_name(arg);
    if (!name) {
        char *real = realpath(arg, NULL);
        if (real) {
            name = root_name(real);
            free(real);
        }
        if (!name && !(name = dfm_strdup(""))) return DFM_E_NOMEM;
    }
    walker w = {fn, warn_fn, ctx, NULL, 0, 0};
    int rc = push_dir(&w, &st);
    if (rc == 0) rc = walk_dir(&w, arg, name, 1);
    free(w.stack);
    free(name);
    return rc;
}
