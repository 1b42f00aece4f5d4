/* replay.c — main() for replaying a fuzz harness without libFuzzer: `make test` links each
 * tests/fuzz/fuzz_NAME.c with this file (built by the normal compiler, under SAN=1 with ASan and
 * UBSan) and runs it on tests/fuzz/corpus/NAME/ and tests/fuzz/crashes/NAME/.
 * Usage: NAME-replay DIR|FILE...  Runs the harness once on every regular file (a directory is
 * read one level deep, in name order) and prints "replayed N inputs". A crash, a sanitizer
 * report or a leak ends the process with a failure status: the test fails. Before each input it
 * names the file on stderr, so the failing one is the last named. An input running past
 * $DFM_FUZZ_REPLAY_TIMEOUT seconds (default 60) fails too: libFuzzer's -timeout, for the
 * quadratic loops and hangs that no sanitizer sees.
 * Not a fuzzer: no mutation, no coverage (that is `make fuzz`).
 */
#include "fuzz.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void on_alarm(int sig)
{
    static const char msg[] = "replay: timeout: the input named last ran too long\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) {}
    _exit(70);
}

static int run_file(const char *path, unsigned timeout)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap) {
            uint8_t *p = realloc(buf, cap *= 2);
            if (!p) free(buf);
            buf = p;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return -1;
    }
    /* an exact-size copy, so that ASan sees any read past the input */
    uint8_t *in = malloc(n ? n : 1);
    if (!in) {
        free(buf);
        return -1;
    }
    memcpy(in, buf, n);
    free(buf);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    alarm(timeout);
    LLVMFuzzerTestOneInput(in, n);
    alarm(0);
    free(in);
    return 0;
}

/* Under ASan (SAN=1), as under libFuzzer: an allocation past 2 GiB is a failure, so that a loader
 * that allocates what a file declares before checking it fails its replay. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "max_allocation_size_mb=2048"; }

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    int count = 0, bad = 0;
    const char *t = getenv("DFM_FUZZ_REPLAY_TIMEOUT");
    unsigned timeout = t && atoi(t) > 0 ? (unsigned)atoi(t) : 60;
    signal(SIGALRM, on_alarm);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) continue; /* no crashes saved yet: nothing to replay */
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i], timeout) != 0;
            count++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "replay: cannot read %s\n", argv[i]);
            return 1;
        }
        char **names = NULL;
        size_t n = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.' || !strcmp(e->d_name, "README")) continue;
            char **p = realloc(names, (n + 1) * sizeof *names);
            if (!p) return 1;
            names = p;
            size_t len = strlen(argv[i]) + strlen(e->d_name) + 2;
            if (!(names[n] = malloc(len))) return 1;
            snprintf(names[n++], len, "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        qsort(names, n, sizeof *names, by_name);
        for (size_t k = 0; k < n; k++) {
            if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode)) {
                bad |= run_file(names[k], timeout) != 0;
                count++;
            }
            free(names[k]);
        }
        free(names);
    }
    printf("replayed %d inputs\n", count);
    return bad ? 1 : 0;
}
