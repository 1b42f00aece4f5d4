/* spm_model.h — load a SentencePiece spiece.model into a dfm_tokenizer built as T5Converter
 * builds tokenizer.json (spm_model.c). Called by tokenizer.c's dfm_tokenizer_load; not for
 * modules outside lib/text (tests and fuzzers drive it directly through tokenizer_impl.h).
 */
#ifndef DFM_TEXT_SPM_MODEL_H
#define DFM_TEXT_SPM_MODEL_H
#include "text/tokenizer_build.h"

/* Fill t (fresh from dfm_tok_new) from the spiece.model at path; config: the
 * tokenizer_config.json beside it (special tokens, extra_ids), or NULL. Returns 0, or DFM_E_IO /
 * DFM_E_LIMIT (reading), DFM_E_FORMAT, DFM_E_UNSUPPORTED, DFM_E_NOMEM, the message naming the
 * file; t is then partly filled: free it with dfm_tokenizer_free (tokenizer.h) either way. */
int dfm_tok_load_spm(dfm_tokenizer *t, const char *path, const char *config);

#endif
