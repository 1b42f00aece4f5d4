/* attention_bias.h — the old name of the biased, token-major attention: now in attention.h
 * (dfm_cpu_attention_bias, a wrapper over dfm_cpu_attention_fwd). Kept while lib/tensor/ops.c
 * includes it. */
#include "cpu/attention.h"
