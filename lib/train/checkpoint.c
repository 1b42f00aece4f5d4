/* checkpoint.c — the run directory's checkpoints (checkpoint.h).
 *
 * Publishing is rename-based: a step is written under step_<N>.tmp, fsync'd to the last file
 * and directory, renamed into place, and only then named by LATEST (symlink and LATEST.txt, each
 * written under a temporary name and renamed over the old). The run directory is fsync'd after
 * each rename so the new names survive a power loss.
 * ref: NeMo Automodel components/checkpoint/checkpointing.py (LATEST, LATEST.txt),
 *      recipes/base_recipe.py (resume lookup)
 * Not here: the contents of a checkpoint, the training loop.
 */
#include "train/checkpoint.h"
#include "base/buf.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JSON_MAX (64u << 20)

/* ---- small helpers ---------------------------------------------------------------------------- */

/* N when name is exactly "step_<N>" (decimal, no sign, no leading zeros, at most 18 digits);
 * else -1. */
static int64_t step_of(const char *name)
{
    if (strncmp(name, "step_", 5)) return -1;
    const char *d = name + 5;
    size_t k = strlen(d);
    if (!k || k > 18 || (d[0] == '0' && k > 1)) return -1;
    int64_t v = 0;
    for (size_t i = 0; i < k; i++) {
        if (d[i] < '0' || d[i] > '9') return -1;
        v = v * 10 + (d[i] - '0');
    }
    return v;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* run_dir must be an existing directory. */
static int check_run_dir(const char *run_dir)
{
    struct stat st;
    if (!run_dir || !*run_dir) return dfm_fail(DFM_E_ARG, "checkpoint: no run directory");
    if (stat(run_dir, &st))
        return dfm_fail(DFM_E_IO, "run directory '%s': %s", run_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return dfm_fail(DFM_E_IO, "run directory '%s': not a directory", run_dir);
    return 0;
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return dfm_fail(DFM_E_IO, "cannot open '%s': %s", path, strerror(errno));
    int r = fsync(fd), e = errno;
    close(fd);
    /* EINVAL: a filesystem that cannot sync this kind of file; nothing more to do */
    if (r && e != EINVAL) return dfm_fail(DFM_E_IO, "cannot sync '%s': %s", path, strerror(e));
    return 0;
}

/* nftw callbacks carry their first error out through these (one walk at a time per thread). */
static _Thread_local int walk_rc;

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if ((type == FTW_DP ? rmdir(path) : unlink(path)) && errno != ENOENT) {
        walk_rc = dfm_fail(DFM_E_IO, "cannot remove '%s': %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* rm -rf path (symlinks removed, never followed); a missing path is fine. */
static int remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : dfm_fail(DFM_E_IO, "cannot remove '%s': %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return rm_one(path, &st, FTW_F, NULL) ? walk_rc : 0;
    walk_rc = 0;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) && !walk_rc)
        walk_rc = dfm_fail(DFM_E_IO, "cannot remove '%s': %s", path, strerror(errno));
    return walk_rc;
}

static int sync_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if (type == FTW_F || type == FTW_D || type == FTW_DP) {
        int rc = fsync_path(path, type != FTW_F);
        if (rc) {
            walk_rc = rc;
            return 1;
        }
    } else if (type == FTW_DNR || type == FTW_NS) {
        walk_rc = dfm_fail(DFM_E_IO, "cannot read '%s': %s", path, strerror(errno));
        return 1;
    }
    return 0; /* symlinks: nothing to sync */
}

/* fsync every file and directory under path, children before their directory. */
static int sync_tree(const char *path)
{
    walk_rc = 0;
    if (nftw(path, sync_one, 16, FTW_DEPTH | FTW_PHYS) && !walk_rc)
        walk_rc = dfm_fail(DFM_E_IO, "cannot sync '%s': %s", path, strerror(errno));
    return walk_rc;
}

/* 1 when run_dir/name is a complete checkpoint directory (holds state/trainer.json). */
static int complete(const char *dir)
{
    char p[4096];
    struct stat st;
    if ((size_t)snprintf(p, sizeof p, "%s/state/trainer.json", dir) >= sizeof p) return 0;
    return is_dir(dir) && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The step_<N> directories of run_dir (all, or only complete ones), highest N first. */
static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int list_steps(const char *run_dir, int only_complete, int64_t **out, int *count)
{
    *out = NULL, *count = 0;
    DIR *d = opendir(run_dir);
    if (!d) return dfm_fail(DFM_E_IO, "cannot read run directory '%s': %s", run_dir, strerror(errno));
    int64_t *v = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int64_t s = step_of(de->d_name);
        char p[4096];
        if (s < 0 || dfm_path_join(p, sizeof p, run_dir, de->d_name)) continue;
        if (!is_dir(p) || (only_complete && !complete(p))) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *nv = dfm_realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                rc = DFM_E_NOMEM;
                break;
            }
            v = nv;
        }
        v[n++] = s;
    }
    closedir(d);
    if (rc) {
        free(v);
        return rc;
    }
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_desc); /* v is NULL when there is none */
    *out = v, *count = n;
    return 0;
}

/* The step LATEST names: the symlink's target, else LATEST.txt's first line, when it is a
 * step_<N> name; -1 when neither gives one. Whether it exists is the caller's question. */
static int64_t latest_step(const char *run_dir, int *from_txt)
{
    char p[4096], t[256];
    *from_txt = 0;
    if (dfm_path_join(p, sizeof p, run_dir, "LATEST")) return -1;
    ssize_t k = readlink(p, t, sizeof t - 1);
    if (k > 0) {
        t[k] = 0;
        int64_t s = step_of(t);
        if (s >= 0) {
            char q[4096];
            if (!dfm_path_join(q, sizeof q, run_dir, t) && complete(q)) return s;
        }
    }
    if (dfm_path_join(p, sizeof p, run_dir, "LATEST.txt")) return -1;
    dfm_buf b = {0};
    if (dfm_read_file(p, 4096, &b)) {
        dfm_buf_free(&b);
        return -1;
    }
    size_t n = b.len;
    while (n && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r' || b.data[n - 1] == ' ')) n--;
    snprintf(t, sizeof t, "%.*s", (int)(n < sizeof t ? n : sizeof t - 1), (const char *)b.data);
    dfm_buf_free(&b);
    int64_t s = step_of(t);
    char q[4096];
    if (s < 0 || dfm_path_join(q, sizeof q, run_dir, t) || !complete(q)) return -1;
    *from_txt = 1;
    return s;
}

/* ---- begin / commit --------------------------------------------------------------------------- */

int dfm_ckpt_begin(const char *run_dir, int64_t step, char *tmp, size_t n)
{
    if (step < 0) return dfm_fail(DFM_E_ARG, "checkpoint: step %lld is negative", (long long)step);
    int rc = check_run_dir(run_dir);
    if (rc) return rc;
    if (!tmp || (size_t)snprintf(tmp, n, "%s/step_%lld.tmp", run_dir, (long long)step) >= n)
        return dfm_fail(DFM_E_ARG, "checkpoint: path of step %lld in '%s' too long", (long long)step, run_dir);
    if ((rc = remove_tree(tmp))) return dfm_fail_ctx(rc, "checkpoint: stale '%s'", tmp);
    if (mkdir(tmp, 0755)) return dfm_fail(DFM_E_IO, "checkpoint: cannot create '%s': %s", tmp, strerror(errno));
    char st[4096];
    if ((rc = dfm_path_join(st, sizeof st, tmp, "state"))) return rc;
    if (mkdir(st, 0755)) return dfm_fail(DFM_E_IO, "checkpoint: cannot create '%s': %s", st, strerror(errno));
    return 0;
}

/* Move src onto dst, which exists: swapped atomically where the filesystem can (the old one
 * then at src), else dst renamed to aside first. *old: where the old one now is. */
static int replace_dir(const char *src, const char *dst, const char *aside, const char **old)
{
#ifdef RENAME_EXCHANGE
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_EXCHANGE) == 0) {
        *old = src;
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return dfm_fail(DFM_E_IO, "cannot exchange '%s' and '%s': %s", src, dst, strerror(errno));
#endif
    int rc = remove_tree(aside);
    if (rc) return rc;
    if (rename(dst, aside)) return dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", dst, aside, strerror(errno));
    if (rename(src, dst)) return dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", src, dst, strerror(errno));
    *old = aside;
    return 0;
}

/* LATEST -> name (a symlink, where the filesystem has them) and LATEST.txt = name. */
static int point_latest(const char *run_dir, const char *name)
{
    char lt[4096], l[4096], txt[4096], line[300];
    int rc;
    if ((rc = dfm_path_join(lt, sizeof lt, run_dir, "LATEST.tmp")) || (rc = dfm_path_join(l, sizeof l, run_dir, "LATEST")) ||
        (rc = dfm_path_join(txt, sizeof txt, run_dir, "LATEST.txt")))
        return rc;
    if (unlink(lt) && errno != ENOENT) return dfm_fail(DFM_E_IO, "cannot remove '%s': %s", lt, strerror(errno));
    if (symlink(name, lt) == 0) {
        if (rename(lt, l)) {
            rc = dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", lt, l, strerror(errno));
            unlink(lt);
            return rc;
        }
    } else if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS) {
        return dfm_fail(DFM_E_IO, "cannot create the symlink '%s': %s", lt, strerror(errno));
    }
    snprintf(line, sizeof line, "%s\n", name);
    return dfm_write_file_atomic(txt, line, strlen(line));
}

/* Remove the step_<N> directories past the keep_last highest, never `keep`. */
static int prune(const char *run_dir, int keep_last, int64_t keep)
{
    if (keep_last <= 0) return 0;
    int64_t *s;
    int n, rc = list_steps(run_dir, 0, &s, &n);
    for (int i = keep_last; !rc && i < n; i++) {
        if (s[i] == keep) continue;
        char name[64], p[4096];
        snprintf(name, sizeof name, "step_%lld", (long long)s[i]);
        if (!(rc = dfm_path_join(p, sizeof p, run_dir, name))) rc = remove_tree(p);
    }
    free(s);
    return rc;
}

int dfm_ckpt_commit(const char *run_dir, int64_t step, int keep_last)
{
    if (step < 0) return dfm_fail(DFM_E_ARG, "checkpoint: step %lld is negative", (long long)step);
    int rc = check_run_dir(run_dir);
    if (rc) return rc;
    char name[64], tmp[4096], dst[4096], aside[4096];
    snprintf(name, sizeof name, "step_%lld", (long long)step);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s/%s.tmp", run_dir, name) >= sizeof tmp ||
        (size_t)snprintf(aside, sizeof aside, "%s/%s.old.tmp", run_dir, name) >= sizeof aside ||
        (rc = dfm_path_join(dst, sizeof dst, run_dir, name)))
        return dfm_fail(DFM_E_ARG, "checkpoint: path of step %lld in '%s' too long", (long long)step, run_dir);
    if (!is_dir(tmp)) return dfm_fail(DFM_E_ARG, "checkpoint: no '%s' to publish (dfm_ckpt_begin first)", tmp);
    if (!complete(tmp))
        return dfm_fail(DFM_E_ARG, "checkpoint: '%s' has no state/trainer.json (write it before committing)", tmp);
    if ((rc = sync_tree(tmp))) return dfm_fail_ctx(rc, "checkpoint %s", name);
    const char *old = NULL;
    if (exists(dst)) {
        if (!is_dir(dst)) return dfm_fail(DFM_E_IO, "checkpoint: '%s' exists and is not a directory", dst);
        if ((rc = replace_dir(tmp, dst, aside, &old))) return dfm_fail_ctx(rc, "checkpoint %s", name);
    } else if (rename(tmp, dst)) {
        return dfm_fail(DFM_E_IO, "checkpoint: cannot rename '%s' to '%s': %s", tmp, dst, strerror(errno));
    }
    if ((rc = fsync_path(run_dir, 1)) || (rc = point_latest(run_dir, name)) || (rc = fsync_path(run_dir, 1)))
        return dfm_fail_ctx(rc, "checkpoint %s", name);
    if (old && (rc = remove_tree(old))) return dfm_fail_ctx(rc, "checkpoint %s: the replaced one", name);
    if ((rc = prune(run_dir, keep_last, step))) return dfm_fail_ctx(rc, "checkpoint: pruning '%s'", run_dir);
    return 0;
}

/* ---- resume ----------------------------------------------------------------------------------- */

/* "step_5, step_10 (2 complete checkpoints)" or "no complete checkpoint", for messages */
static void describe(const char *run_dir, char *out, size_t n)
{
    int64_t *s;
    int k;
    if (list_steps(run_dir, 1, &s, &k)) {
        snprintf(out, n, "cannot be listed");
        return;
    }
    if (!k) snprintf(out, n, "has no complete checkpoint (step_<N>/state/trainer.json)");
    else snprintf(out, n, "has %d complete checkpoint%s, the newest step_%lld", k, k > 1 ? "s" : "", (long long)s[0]);
    free(s);
}

int dfm_ckpt_resolve(const char *run_dir, const char *spec, char *dir, size_t n, int64_t *step)
{
    int rc = check_run_dir(run_dir);
    if (rc) return rc;
    char p[4096], what[300];
    if (!spec || !strcmp(spec, "LATEST")) {
        int from_txt;
        int64_t s = latest_step(run_dir, &from_txt);
        if (s < 0) { /* no usable LATEST: the highest complete step */
            int64_t *v;
            int k;
            if ((rc = list_steps(run_dir, 1, &v, &k))) return rc;
            s = k ? v[0] : -1;
            free(v);
        }
        if (s < 0) return dfm_fail(DFM_CKPT_NONE, "nothing to resume from in '%s': it has no complete checkpoint", run_dir);
        if ((size_t)snprintf(dir, n, "%s/step_%lld", run_dir, (long long)s) >= n)
            return dfm_fail(DFM_E_ARG, "checkpoint: path too long");
        *step = s;
        return 0;
    }
    /* a name in run_dir, else a path */
    int in_run = !strchr(spec, '/') && !dfm_path_join(p, sizeof p, run_dir, spec) && is_dir(p);
    if (!in_run && (size_t)snprintf(p, sizeof p, "%s", spec) >= sizeof p)
        return dfm_fail(DFM_E_ARG, "checkpoint '%s': path too long", spec);
    if (!is_dir(p)) {
        describe(run_dir, what, sizeof what);
        return dfm_fail(DFM_E_ARG, "checkpoint '%s' not found ('%s' %s)", spec, run_dir, what);
    }
    if (!complete(p)) {
        return dfm_fail(DFM_E_ARG, "checkpoint '%s' is incomplete: no state/trainer.json (an interrupted save?)", p);
    }
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/') p[--len] = 0;
    const char *base = strrchr(p, '/');
    int64_t s = step_of(base ? base + 1 : p);
    if (s < 0) { /* not named step_<N>: its trainer.json says */
        char tj[4200];
        cJSON *j = NULL;
        snprintf(tj, sizeof tj, "%s/state/trainer.json", p);
        if ((rc = dfm_ckpt_read_json(tj, &j))) return rc;
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (cJSON_IsNumber(it) && it->valuedouble >= 0 && it->valuedouble < 9e15 && it->valuedouble == (double)(int64_t)it->valuedouble)
            s = (int64_t)it->valuedouble;
        cJSON_Delete(j);
        if (s < 0) return dfm_fail(DFM_E_FORMAT, "checkpoint '%s': not named step_<N> and '%s' has no integer \"step\"", p, tj);
    }
    if ((size_t)snprintf(dir, n, "%s", p) >= n) return dfm_fail(DFM_E_ARG, "checkpoint: path too long");
    *step = s;
    return 0;
}

int dfm_ckpt_clean_tmp(const char *run_dir, int *removed)
{
    if (removed) *removed = 0;
    int rc = check_run_dir(run_dir), k = 0;
    if (rc) return rc;
    DIR *d = opendir(run_dir);
    if (!d) return dfm_fail(DFM_E_IO, "cannot read run directory '%s': %s", run_dir, strerror(errno));
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        const char *f = de->d_name;
        size_t l = strlen(f);
        int step_tmp = !strncmp(f, "step_", 5) && l > 9 && !strcmp(f + l - 4, ".tmp");
        if (!step_tmp && strcmp(f, "LATEST.tmp")) continue;
        char p[4096];
        if (!(rc = dfm_path_join(p, sizeof p, run_dir, f)) && !(rc = remove_tree(p))) k += step_tmp;
    }
    closedir(d);
    if (removed) *removed = k;
    return rc;
}

/* ---- JSON state files ------------------------------------------------------------------------- */

int dfm_ckpt_write_json(const char *path, const cJSON *obj)
{
    if (!obj) return dfm_fail(DFM_E_ARG, "'%s': no JSON to write", path);
    char *s = dfm_json_pretty(obj);
    if (!s) return dfm_fail(DFM_E_NOMEM, "'%s': out of memory", path);
    int rc = dfm_write_file_atomic(path, s, strlen(s));
    free(s);
    return rc;
}

int dfm_ckpt_read_json(const char *path, cJSON **obj)
{
    *obj = NULL;
    dfm_buf b = {0};
    int rc = dfm_read_file(path, JSON_MAX, &b);
    if (rc) {
        dfm_buf_free(&b);
        return rc;
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)b.data, b.len, &end, 0);
    if (!j) {
        size_t at = end && end >= (const char *)b.data ? (size_t)(end - (const char *)b.data) : 0;
        if (!end && cJSON_GetErrorPtr()) at = (size_t)(cJSON_GetErrorPtr() - (const char *)b.data);
        dfm_buf_free(&b);
        return dfm_fail(DFM_E_FORMAT, "'%s': not valid JSON (at byte %zu)", path, at);
    }
    dfm_buf_free(&b);
    *obj = j;
    return 0;
}
