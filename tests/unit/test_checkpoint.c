/* test_checkpoint.c — the run directory's checkpoints (train/checkpoint.h):
 *   begin/commit sequences: LATEST (a relative symlink) and LATEST.txt name the newest, resolve
 *     finds it, keep_last prunes to the highest steps but never the LATEST target, keep_last 0
 *     keeps all, no .tmp is left behind;
 *   resolve: through the symlink, through LATEST.txt alone, past a dangling LATEST (to the
 *     highest complete step), past incomplete step_<N> directories and stale .tmp ones; named
 *     ("step_N", a path, a directory not named step_<N> whose trainer.json gives the step);
 *     nothing to resume (DFM_CKPT_NONE);
 *   an interrupted save (begin without commit) leaves the previous LATEST valid, and clean_tmp
 *     removes it; begin over a stale .tmp starts clean;
 *   replacing an existing step_N: the new contents, nothing left aside;
 *   errors with messages: run_dir missing / not a directory / not writable (when not root),
 *     commit without begin or without trainer.json, negative steps, bad JSON. */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "train/checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh, empty run directory under the test's tmpdir. */
static void run_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/ckpt_%s", dfm_test_tmpdir(), name);
    mkdir(out, 0755);
}

static int is_dir_(const char *dir, const char *name)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists_(const char *dir, const char *name)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return lstat(p, &st) == 0;
}

/* Entries of dir whose name contains s. */
static int count_(const char *dir, const char *s)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) n += strstr(de->d_name, s) != NULL;
    closedir(d);
    return n;
}

static void put(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK_EQ(dfm_write_file_atomic(p, text, strlen(text)), 0);
}

static void get(const char *dir, const char *name, char *out, size_t n)
{
    char p[1024];
    dfm_buf b = {0};
    snprintf(p, sizeof p, "%s/%s", dir, name);
    out[0] = 0;
    if (!dfm_read_file(p, 0, &b)) snprintf(out, n, "%.*s", (int)b.len, (const char *)b.data);
    dfm_buf_free(&b);
}

/* state/trainer.json {"step": step} in dir */
static void state(const char *dir, int64_t step)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/state/trainer.json", dir);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)step);
    CHECK_EQ(dfm_ckpt_write_json(p, j), 0);
    cJSON_Delete(j);
}

/* A whole save of `step` with model.bin = text. */
static void save(const char *rd, int64_t step, const char *text, int keep_last)
{
    char tmp[1024];
    CHECK_EQ(dfm_ckpt_begin(rd, step, tmp, sizeof tmp), 0);
    put(tmp, "model.bin", text);
    state(tmp, step);
    int rc = dfm_ckpt_commit(rd, step, keep_last);
    if (rc) fprintf(stderr, "  commit %lld: %s\n", (long long)step, dfm_errmsg());
    CHECK_EQ(rc, 0);
}

static int64_t resolved(const char *rd, const char *spec, char *dir, size_t n)
{
    int64_t s = -1;
    int rc = dfm_ckpt_resolve(rd, spec, dir, n, &s);
    if (rc) fprintf(stderr, "  resolve %s: %s\n", spec ? spec : "(null)", dfm_errmsg());
    return rc ? rc : s;
}

static void check_latest(const char *rd, const char *name)
{
    char p[1024], t[256] = "", txt[256];
    snprintf(p, sizeof p, "%s/LATEST", rd);
    ssize_t k = readlink(p, t, sizeof t - 1);
    if (k >= 0) t[k] = 0;
    CHECK_STR(t, name); /* relative */
    get(rd, "LATEST.txt", txt, sizeof txt);
    char want[256];
    snprintf(want, sizeof want, "%s\n", name);
    CHECK_STR(txt, want);
}

TEST(ckpt_sequence)
{
    char rd[512], d[1024], want[1024], text[64];
    run_dir(rd, sizeof rd, "seq");
    for (int64_t s = 10; s <= 40; s += 10) {
        snprintf(text, sizeof text, "weights %lld", (long long)s);
        save(rd, s, text, 2);
        char name[32];
        snprintf(name, sizeof name, "step_%lld", (long long)s);
        check_latest(rd, name);
        CHECK_EQ(resolved(rd, NULL, d, sizeof d), s);
        snprintf(want, sizeof want, "%s/%s", rd, name);
        CHECK_STR(d, want);
        CHECK_EQ(resolved(rd, "LATEST", d, sizeof d), s);
        CHECK(is_dir_(want, "state"));
        get(want, "model.bin", d, sizeof d);
        CHECK_STR(d, text);
        CHECK_EQ(count_(rd, "step_"), s == 10 ? 1 : 2); /* keep_last 2 */
        CHECK_EQ(count_(rd, ".tmp"), 0);
    }
    CHECK(is_dir_(rd, "step_30") && is_dir_(rd, "step_40") && !exists_(rd, "step_20") && !exists_(rd, "step_10"));

    /* keep_last <= 0 keeps everything */
    run_dir(rd, sizeof rd, "keepall");
    for (int s = 1; s <= 5; s++) save(rd, s, "w", 0);
    CHECK_EQ(count_(rd, "step_"), 5);
    save(rd, 6, "w", -1);
    CHECK_EQ(count_(rd, "step_"), 6);
    /* then keep_last 1: only the newest */
    save(rd, 7, "w", 1);
    CHECK_EQ(count_(rd, "step_"), 1);
    CHECK(is_dir_(rd, "step_7"));
    /* the order is numeric, not by name: step_10 is newer than step_9 */
    save(rd, 9, "w", 0);
    save(rd, 10, "w", 2);
    CHECK(is_dir_(rd, "step_9") && is_dir_(rd, "step_10") && !exists_(rd, "step_7"));
}

TEST(ckpt_prune_keeps_latest)
{
    char rd[512], d[1024];
    run_dir(rd, sizeof rd, "prune_latest");
    save(rd, 10, "a", 0);
    save(rd, 20, "b", 0);
    /* resumed from an earlier step, saving step 15: it is LATEST although 20 is higher */
    save(rd, 15, "c", 1);
    check_latest(rd, "step_15");
    CHECK(is_dir_(rd, "step_15") && is_dir_(rd, "step_20") && !exists_(rd, "step_10"));
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 15);
}

TEST(ckpt_resolve_pointers)
{
    char rd[512], d[1024], p[1024];
    run_dir(rd, sizeof rd, "pointers");
    save(rd, 10, "a", 0);
    save(rd, 20, "b", 0);
    /* only LATEST.txt (a filesystem without symlinks), naming an older step: it is used */
    snprintf(p, sizeof p, "%s/LATEST", rd);
    CHECK_EQ(unlink(p), 0);
    put(rd, "LATEST.txt", "step_10\n");
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 10);
    /* the symlink wins over LATEST.txt */
    CHECK_EQ(symlink("step_20", p), 0);
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 20);
    /* dangling LATEST (its step was deleted) and LATEST.txt: the highest complete step */
    CHECK_EQ(unlink(p), 0);
    CHECK_EQ(symlink("step_99", p), 0);
    put(rd, "LATEST.txt", "step_99\n");
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 20);
    /* LATEST naming something that is not a step directory is not followed */
    CHECK_EQ(unlink(p), 0);
    CHECK_EQ(symlink("..", p), 0);
    put(rd, "LATEST.txt", "../../etc\n");
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 20);
    /* incomplete directories (no state/trainer.json) and stale .tmp ones are skipped */
    snprintf(p, sizeof p, "%s/step_30", rd);
    CHECK_EQ(mkdir(p, 0755), 0);
    char tmp[1024];
    CHECK_EQ(dfm_ckpt_begin(rd, 40, tmp, sizeof tmp), 0);
    state(tmp, 40); /* complete inside, but never committed */
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 20);
    /* a name that only looks like a step */
    char sp[1100];
    snprintf(p, sizeof p, "%s/step_050", rd);
    CHECK_EQ(mkdir(p, 0755), 0);
    snprintf(sp, sizeof sp, "%s/state", p);
    CHECK_EQ(mkdir(sp, 0755), 0);
    state(p, 50);
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 20);
}

TEST(ckpt_resolve_named)
{
    char rd[512], d[1024], p[1024], want[1024];
    run_dir(rd, sizeof rd, "named");
    save(rd, 5, "a", 0);
    save(rd, 10, "b", 0);
    CHECK_EQ(resolved(rd, "step_5", d, sizeof d), 5);
    snprintf(want, sizeof want, "%s/step_5", rd);
    CHECK_STR(d, want);
    /* a path; trailing slashes dropped */
    snprintf(p, sizeof p, "%s/step_10/", rd);
    CHECK_EQ(resolved(rd, p, d, sizeof d), 10);
    snprintf(want, sizeof want, "%s/step_10", rd);
    CHECK_STR(d, want);
    /* a copy under another name: the step from its trainer.json */
    char other[512];
    run_dir(other, sizeof other, "named_copy");
    snprintf(p, sizeof p, "%s/state", other);
    CHECK_EQ(mkdir(p, 0755), 0);
    state(other, 123);
    CHECK_EQ(resolved(rd, other, d, sizeof d), 123);
    CHECK_STR(d, other);
    /* missing: DFM_E_ARG saying what there is */
    int64_t s;
    CHECK_EQ(dfm_ckpt_resolve(rd, "step_7", d, sizeof d, &s), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "'step_7' not found") && strstr(dfm_errmsg(), "newest step_10"));
    /* incomplete */
    snprintf(p, sizeof p, "%s/step_20", rd);
    CHECK_EQ(mkdir(p, 0755), 0);
    CHECK_EQ(dfm_ckpt_resolve(rd, "step_20", d, sizeof d, &s), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "incomplete") != NULL);
    /* not named step_<N>, no step in trainer.json */
    snprintf(p, sizeof p, "%s/state/trainer.json", other);
    CHECK_EQ(dfm_write_file_atomic(p, "{\"epoch\": 1}", 12), 0);
    CHECK_EQ(dfm_ckpt_resolve(rd, other, d, sizeof d, &s), DFM_E_FORMAT);
    /* dir too small */
    char small[8];
    CHECK_EQ(dfm_ckpt_resolve(rd, "step_5", small, sizeof small, &s), DFM_E_ARG);
}

TEST(ckpt_nothing)
{
    char rd[512], d[1024], p[1024];
    int64_t s = -1;
    run_dir(rd, sizeof rd, "empty");
    CHECK_EQ(dfm_ckpt_resolve(rd, NULL, d, sizeof d, &s), DFM_CKPT_NONE);
    CHECK(strstr(dfm_errmsg(), "nothing to resume") != NULL);
    CHECK_EQ(dfm_ckpt_resolve(rd, "LATEST", d, sizeof d, &s), DFM_CKPT_NONE);
    /* only an interrupted save and a dangling LATEST */
    char tmp[1024];
    CHECK_EQ(dfm_ckpt_begin(rd, 3, tmp, sizeof tmp), 0);
    state(tmp, 3);
    snprintf(p, sizeof p, "%s/LATEST", rd);
    CHECK_EQ(symlink("step_3", p), 0);
    CHECK_EQ(dfm_ckpt_resolve(rd, NULL, d, sizeof d, &s), DFM_CKPT_NONE);
    CHECK_EQ(s, -1);
}

TEST(ckpt_interrupted)
{
    char rd[512], d[1024], tmp[1024], p[1024];
    run_dir(rd, sizeof rd, "interrupted");
    save(rd, 100, "good", 3);
    /* a save of 200 that never commits (killed while writing) */
    CHECK_EQ(dfm_ckpt_begin(rd, 200, tmp, sizeof tmp), 0);
    snprintf(p, sizeof p, "%s/step_200.tmp", rd);
    CHECK_STR(tmp, p);
    CHECK(is_dir_(tmp, "state"));
    put(tmp, "model.bin", "half");
    check_latest(rd, "step_100");
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 100);
    get(d, "model.bin", p, sizeof p);
    CHECK_STR(p, "good");
    /* and a crash between "symlink LATEST.tmp" and the rename */
    snprintf(p, sizeof p, "%s/LATEST.tmp", rd);
    CHECK_EQ(symlink("step_200", p), 0);
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 100);
    /* the next start cleans up */
    int removed = -1;
    CHECK_EQ(dfm_ckpt_clean_tmp(rd, &removed), 0);
    CHECK_EQ(removed, 1);
    CHECK(!exists_(rd, "step_200.tmp") && !exists_(rd, "LATEST.tmp") && is_dir_(rd, "step_100"));
    CHECK_EQ(dfm_ckpt_clean_tmp(rd, &removed), 0);
    CHECK_EQ(removed, 0);
    /* begin over a stale .tmp starts from an empty directory */
    CHECK_EQ(dfm_ckpt_begin(rd, 300, tmp, sizeof tmp), 0);
    put(tmp, "junk", "x");
    CHECK_EQ(dfm_ckpt_begin(rd, 300, tmp, sizeof tmp), 0);
    CHECK(!exists_(tmp, "junk") && is_dir_(tmp, "state"));
    CHECK_EQ(count_(tmp, ""), 3); /* ".", "..", "state" */
    /* a leftover LATEST.tmp does not stop the next commit */
    snprintf(p, sizeof p, "%s/LATEST.tmp", rd);
    CHECK_EQ(dfm_write_file_atomic(p, "x", 1), 0);
    state(tmp, 300);
    CHECK_EQ(dfm_ckpt_commit(rd, 300, 0), 0);
    check_latest(rd, "step_300");
    CHECK(!exists_(rd, "LATEST.tmp"));
}

TEST(ckpt_replace)
{
    char rd[512], d[1024], p[1024];
    run_dir(rd, sizeof rd, "replace");
    save(rd, 10, "first", 0);
    char tmp[1024];
    CHECK_EQ(dfm_ckpt_begin(rd, 10, tmp, sizeof tmp), 0);
    put(tmp, "other.bin", "second");
    state(tmp, 10);
    CHECK_EQ(dfm_ckpt_commit(rd, 10, 0), 0);
    CHECK_EQ(resolved(rd, NULL, d, sizeof d), 10);
    get(d, "other.bin", p, sizeof p);
    CHECK_STR(p, "second");
    CHECK(!exists_(d, "model.bin")); /* the old directory is gone, not merged */
    CHECK_EQ(count_(rd, "step_"), 1);
    CHECK_EQ(count_(rd, ".tmp"), 0);
    check_latest(rd, "step_10");
}

TEST(ckpt_errors)
{
    char rd[512], d[1024], tmp[1024], p[1024];
    int64_t s;
    snprintf(rd, sizeof rd, "%s/ckpt_missing", dfm_test_tmpdir());
    CHECK_EQ(dfm_ckpt_begin(rd, 1, tmp, sizeof tmp), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "ckpt_missing") && strstr(dfm_errmsg(), "No such file"));
    CHECK_EQ(dfm_ckpt_commit(rd, 1, 0), DFM_E_IO);
    CHECK_EQ(dfm_ckpt_resolve(rd, NULL, d, sizeof d, &s), DFM_E_IO);
    CHECK_EQ(dfm_ckpt_clean_tmp(rd, NULL), DFM_E_IO);
    /* a file, not a directory */
    snprintf(rd, sizeof rd, "%s/ckpt_file", dfm_test_tmpdir());
    CHECK_EQ(dfm_write_file_atomic(rd, "x", 1), 0);
    CHECK_EQ(dfm_ckpt_begin(rd, 1, tmp, sizeof tmp), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "not a directory") != NULL);
    CHECK_EQ(dfm_ckpt_resolve(rd, NULL, d, sizeof d, &s), DFM_E_IO);

    run_dir(rd, sizeof rd, "errors");
    CHECK_EQ(dfm_ckpt_begin(rd, -1, tmp, sizeof tmp), DFM_E_ARG);
    CHECK_EQ(dfm_ckpt_begin(rd, 1, tmp, 8), DFM_E_ARG); /* tmp too small */
    /* commit without begin, and without trainer.json */
    CHECK_EQ(dfm_ckpt_commit(rd, 1, 0), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "dfm_ckpt_begin") != NULL);
    CHECK_EQ(dfm_ckpt_begin(rd, 1, tmp, sizeof tmp), 0);
    CHECK_EQ(dfm_ckpt_commit(rd, 1, 0), DFM_E_ARG);
    CHECK(strstr(dfm_errmsg(), "trainer.json") != NULL);
    CHECK(!exists_(rd, "step_1") && !exists_(rd, "LATEST"));
    /* step_N exists as a file */
    state(tmp, 1);
    snprintf(p, sizeof p, "%s/step_1", rd);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    CHECK_EQ(dfm_ckpt_commit(rd, 1, 0), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "not a directory") != NULL);
    /* not writable (root writes anyway: checked only as another user) */
    if (geteuid() != 0) {
        run_dir(p, sizeof p, "readonly");
        CHECK_EQ(chmod(p, 0555), 0);
        CHECK_EQ(dfm_ckpt_begin(p, 1, tmp, sizeof tmp), DFM_E_IO);
        CHECK(strstr(dfm_errmsg(), "Permission denied") != NULL);
        chmod(p, 0755);
    }
}

TEST(ckpt_json)
{
    char rd[512], p[1024];
    run_dir(rd, sizeof rd, "json");
    snprintf(p, sizeof p, "%s/trainer.json", rd);
    cJSON *j = cJSON_CreateObject(), *r = NULL;
    cJSON_AddNumberToObject(j, "step", 1234567);
    cJSON_AddNumberToObject(j, "loss", 0.125);
    cJSON_AddStringToObject(j, "note", "a \"quoted\" word");
    CHECK_EQ(dfm_ckpt_write_json(p, j), 0);
    CHECK(!exists_(rd, "trainer.json.tmp"));
    CHECK_EQ(dfm_ckpt_read_json(p, &r), 0);
    CHECK(r && cJSON_Compare(j, r, 1));
    cJSON_Delete(r), cJSON_Delete(j);
    /* two-space indentation, one key a line */
    char text[512];
    get(rd, "trainer.json", text, sizeof text);
    CHECK(strstr(text, "\n  \"step\": 1234567,\n") != NULL);
    /* not JSON */
    CHECK_EQ(dfm_write_file_atomic(p, "{\"step\": 1,, }", 14), 0);
    r = (cJSON *)1;
    CHECK_EQ(dfm_ckpt_read_json(p, &r), DFM_E_FORMAT);
    CHECK(r == NULL);
    CHECK(strstr(dfm_errmsg(), "not valid JSON (at byte 1") != NULL); /* cJSON's position: 11 or 12 */
    snprintf(p, sizeof p, "%s/none.json", rd);
    CHECK_EQ(dfm_ckpt_read_json(p, &r), DFM_E_IO);
}
