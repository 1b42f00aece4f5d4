/* test.h — the minimal unit-test runner: TEST(name) { ... } registers a test; CHECK* record a
 * failure with file:line and go on; main.c runs every test (or those whose name contains argv[1])
 * and ends with the line "N passed, N failed". The exit status carries the verdict. */
#ifndef DFM_TEST_H
#define DFM_TEST_H
#include "base/buf.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef void (*dfm_test_fn)(void);
void dfm_test_register(const char *name, dfm_test_fn fn);
extern int dfm_test_failures; /* failures within the running test */
/* Directory of test fixtures (tests/fixtures) and a scratch directory for this run. */
const char *dfm_test_fixtures(void);
const char *dfm_test_tmpdir(void);
/* Read tests/fixtures/DIR/NAME whole into *b (zeroed first); prints why on failure. */
int dfm_test_load_fixture(const char *dir, const char *name, dfm_buf *b);

#define TEST(name)                                                          \
    static void test_##name(void);                                          \
    __attribute__((constructor)) static void register_##name(void)          \
    {                                                                       \
        dfm_test_register(#name, test_##name);                              \
    }                                                                       \
    static void test_##name(void)

#define CHECK(c)                                                            \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); \
            dfm_test_failures++;                                            \
        }                                                                   \
    } while (0)
#define CHECK_EQ(a, b)                                                      \
    do {                                                                    \
        long long a_ = (long long)(a), b_ = (long long)(b);                 \
        if (a_ != b_) {                                                     \
            fprintf(stderr, "  %s:%d: %s == %s failed (%lld vs %lld)\n", __FILE__, __LINE__, \
                    #a, #b, a_, b_);                                        \
            dfm_test_failures++;                                            \
        }                                                                   \
    } while (0)
#define CHECK_STR(a, b)                                                     \
    do {                                                                    \
        const char *a_ = (a), *b_ = (b);                                    \
        if (!a_ || !b_ || strcmp(a_, b_)) {                                 \
            fprintf(stderr, "  %s:%d: %s == %s failed ('%s' vs '%s')\n", __FILE__, __LINE__, \
                    #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");        \
            dfm_test_failures++;                                            \
        }                                                                   \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                               \
    do {                                                                    \
        double a_ = (a), b_ = (b);                                          \
        if (!(fabs(a_ - b_) <= (tol))) {                                    \
            fprintf(stderr, "  %s:%d: |%s - %s| <= %g failed (%g vs %g)\n", __FILE__, __LINE__, \
                    #a, #b, (double)(tol), a_, b_);                         \
            dfm_test_failures++;                                            \
        }                                                                   \
    } while (0)
#endif
