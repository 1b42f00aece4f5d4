/* main.c — runs the registered unit tests; prints "N passed, N failed" last. */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"

#include <stdlib.h>
#include <unistd.h>

#define MAX_TESTS 1024
typedef struct {
    const char *name;
    dfm_test_fn fn;
} test_entry;
static test_entry g_tests[MAX_TESTS];
static int g_ntests;
int dfm_test_failures;
static char g_tmp[256];

void dfm_test_register(const char *name, dfm_test_fn fn)
{
    if (g_ntests < MAX_TESTS) g_tests[g_ntests++] = (test_entry){name, fn};
}

const char *dfm_test_fixtures(void)
{
    const char *d = getenv("DFM_FIXTURES");
    return d ? d : "tests/fixtures";
}

const char *dfm_test_tmpdir(void) { return g_tmp; }

int dfm_test_load_fixture(const char *dir, const char *name, dfm_buf *b)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", dfm_test_fixtures(), dir, name);
    memset(b, 0, sizeof *b);
    int rc = dfm_read_file(path, 0, b);
    if (rc < 0) fprintf(stderr, "  cannot read %s: %s\n", path, dfm_errmsg());
    return rc;
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    snprintf(g_tmp, sizeof g_tmp, "%s/dfm-unit-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    int passed = 0, failed = 0;
    for (int i = 0; i < g_ntests; i++) {
        if (filter && !strstr(g_tests[i].name, filter)) continue;
        dfm_test_failures = 0;
        g_tests[i].fn();
        if (dfm_test_failures) {
            fprintf(stderr, "FAIL %s\n", g_tests[i].name);
            failed++;
        } else {
            fprintf(stderr, "ok   %s\n", g_tests[i].name);
            passed++;
        }
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_tmp);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
