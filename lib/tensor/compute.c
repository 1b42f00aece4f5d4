/* compute.c — the compute context (compute.h). */
#include "tensor/compute.h"

#include <string.h>

const dfm_compute dfm_compute_f32 = {DFM_F32, NULL};

int dfm_compute_is_bf16(const dfm_compute *c) { return c && c->dtype == DFM_BF16; }

int dfm_compute_keeps_f32(const dfm_compute *c, const char *module)
{
    if (!c || !c->keep_f32 || !module) return 0;
    for (const char *p = module;;) {
        const char *e = strchr(p, '.');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        for (const char *const *k = c->keep_f32; *k; k++)
            if (strlen(*k) == n && !memcmp(*k, p, n)) return 1;
        if (!e) return 0;
        p = e + 1;
    }
}

dfm_compute dfm_compute_for(const dfm_compute *c, const char *module)
{
    if (!c) return dfm_compute_f32;
    dfm_compute r = *c;
    if (dfm_compute_keeps_f32(c, module)) r.dtype = DFM_F32;
    return r;
}
