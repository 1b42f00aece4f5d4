/* tokenizer_impl.h — everything inside dfm_tokenizer in one include, for white-box tests and
 * fuzz harnesses that drive the file loaders without tokenizer.c's dispatch
 * (tests/unit/test_loader_limits.c, tests/fuzz/fuzz_spiece.c, fuzz_tokenizer_json.c).
 * Nothing in lib/ includes it: lib/text's own files include the one header they need, so that
 * its includes form a DAG:
 *   grapheme.h, unigram.h, charsmap.h <- tokenizer_build.h <- tokenizer_json.h, spm_model.h
 *   <- tokenizer.c (with the public tokenizer.h, which includes no lib/text header).
 */
#ifndef DFM_TEXT_TOKENIZER_IMPL_H
#define DFM_TEXT_TOKENIZER_IMPL_H
#include "text/spm_model.h"
#include "text/tokenizer.h"
#include "text/tokenizer_build.h"
#include "text/tokenizer_json.h"

#endif
