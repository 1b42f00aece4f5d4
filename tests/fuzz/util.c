/* util.c — helpers for the fuzz harnesses (fuzz.h). Not a harness itself. */
#include "fuzz.h"
#include "base/error.h"
#include "text/tokenizer.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

int fz_memfile(const void *data, size_t n, char *path, size_t cap)
{
    int fd = memfd_create("dfm-fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (write_all(fd, data, n)) {
        close(fd);
        return -1;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

int fz_tmpdir(char *dir, size_t cap)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, cap, "%s/dfm-fuzz-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

int fz_put(const char *dir, const char *name, const void *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *slash = strrchr(path, '/');
    if (slash > path + strlen(dir)) { /* a sub-directory */
        *slash = 0;
        mkdir(path, 0700);
        *slash = '/';
    }
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int rc = n && fwrite(data, 1, n, f) != n ? -1 : 0;
    if (fclose(f)) rc = -1;
    return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void fz_rmtree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int fz_note(const char *what, int rc)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("DFM_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "  %s: %s\n", what, rc < 0 ? dfm_errmsg() : "ok");
    return rc;
}

void fz_use_tokenizer(const dfm_tokenizer *t)
{
#define T(lit) {lit, sizeof lit - 1}
    static const struct {
        const char *s;
        size_t n;
    } texts[] = {
        T(""),
        T("Hello world"),
        T("  two  spaces \t tab\n "),
        T("<extra_id_0> </s><pad><unk>x"),
        T("\xC3\xA9t\xC3\xA9 e\xCC\x81 \xEF\xAC\x81 \xE2\x85\xA8"),      /* é, e + U+0301, ﬁ, Ⅸ */
        T("\xF0\x9F\x98\x80\xE4\xB8\xAD\xE6\x96\x87 \xE2\x96\x81x"), /* emoji, 中文, ▁ */
        T("a\0b"),
    };
#undef T
    int vocab = dfm_tokenizer_vocab_size(t);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        static const int max_len[] = {0, 1, 4, 512};
        for (int k = 0; k < 4; k++) {
            int32_t *ids = NULL;
            int n = 0;
            if (dfm_tokenizer_encode(t, texts[i].s, texts[i].n, max_len[k], &ids, &n) == 0) {
                if (max_len[k] > 0 && n > max_len[k]) abort();
                for (int j = 0; j < n; j++) /* (template ids may lie past the vocabulary) */
                    if (ids[j] < 0) abort();
                free(ids);
            }
        }
    }
    (void)dfm_tokenizer_eos_id(t);
    (void)dfm_tokenizer_pad_id(t);
    (void)dfm_tokenizer_token_id(t, "</s>");
    (void)dfm_tokenizer_piece(t, 0);
    (void)dfm_tokenizer_piece(t, vocab);
}
