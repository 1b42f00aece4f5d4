/* fuzz.h — what every libFuzzer harness in tests/fuzz/ shares: the entry point libFuzzer calls,
 * and ways to hand bytes to loaders that want a path (an anonymous memory file, or a scratch
 * directory that the harness removes before it returns).
 *
 * A harness is tests/fuzz/fuzz_NAME.c defining LLVMFuzzerTestOneInput: run the parser on the
 * bytes, free everything, leave no file behind, and bound the work (cap the sizes it asks a
 * loader for). It must not judge the result (any error value is fine): the sanitizers, the leak
 * checker and libFuzzer's time/memory limits are the judges. `make fuzz` links it with
 * libFuzzer (clang); `make test` links it with replay.c (any compiler) and runs it on
 * tests/fuzz/corpus/NAME/ and tests/fuzz/crashes/NAME/. See tests/fuzz/README.md.
 */
#ifndef DFM_TESTS_FUZZ_H
#define DFM_TESTS_FUZZ_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An anonymous in-memory file (memfd) holding data[0..n); *path gets "/proc/self/fd/N", which
 * open() re-opens from the start. Returns the fd (close it when done), -1 on failure. */
int fz_memfile(const void *data, size_t n, char *path, size_t cap);
/* A fresh scratch directory under $TMPDIR (or /tmp) in dir[cap]; 0 or -1. */
int fz_tmpdir(char *dir, size_t cap);
/* Write dir/name (with one level of sub-directory allowed in name, created as needed); 0 or -1. */
int fz_put(const char *dir, const char *name, const void *data, size_t n);
/* Remove dir and everything under it. */
void fz_rmtree(const char *dir);

/* With DFM_FUZZ_VERBOSE set: print "what: ok" or "what: <error message>" to stderr, to see how far
 * a seed gets (a seed that fails where it should load covers nothing past that). Returns rc. */
int fz_note(const char *what, int rc);

/* Use a loaded tokenizer the way dfm-text-encode does: encode a fixed set of texts (spaces,
 * added-token look-alikes, combining marks, emoji, NUL) with and without truncation, and query
 * its ids; every id must be below the vocabulary size. Aborts on a broken invariant. */
typedef struct dfm_tokenizer dfm_tokenizer;
void fz_use_tokenizer(const dfm_tokenizer *t);

#endif
