/* tokenizer_json.h — load a Hugging Face tokenizer.json into a dfm_tokenizer (tokenizer_json.c).
 * Called by tokenizer.c's dfm_tokenizer_load; not for modules outside lib/text (tests and fuzzers
 * drive it directly through tokenizer_impl.h).
 */
#ifndef DFM_TEXT_TOKENIZER_JSON_H
#define DFM_TEXT_TOKENIZER_JSON_H
#include "text/tokenizer_build.h"

/* Fill t (fresh from dfm_tok_new) from the tokenizer.json at path, then dfm_tok_finish it.
 * Returns 0, or DFM_E_IO / DFM_E_LIMIT (reading), DFM_E_FORMAT, DFM_E_UNSUPPORTED (a component
 * type T5/UMT5 files do not use), DFM_E_NOMEM, the message naming the file; t is then partly
 * filled: free it with dfm_tokenizer_free (tokenizer.h) either way. */
int dfm_tok_load_json(dfm_tokenizer *t, const char *path);

#endif
