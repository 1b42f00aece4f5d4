/* dist_check.c — dfm-dist-check: every collective of lib/dist/dist.h checked on this job, run by
 * tests/pipeline/dist.sh alone (the "single" backend) and under `mpirun -np 2` and `-np 3`.
 *
 * Each rank makes every rank's inputs (a hash of dtype, size, rank and index, spread over 2^-8 ..
 * 2^8 so that the order of a sum shows in its bits) and checks:
 *   allreduce       F32 and F64 at n = 0, 1, 7, 1000003: bit for bit the rank-ordered sum
 *                   ((x0 + x1) + x2) + ... computed here in a plain loop;
 *   reduce_scatter  F32 and F64 at n = 0, 1, 7 and ~1e6 / N per rank: this rank's block, likewise;
 *   allgather       F32, F64 and U8 (any dtype): every rank's block in rank order;
 *   broadcast       0, 1, 7 and 3000001 bytes from the last rank;
 *   allreduce_async four sums queued at once (one of them empty), a blocking allreduce behind
 *                   them (it waits for the queue), then dfm_dist_wait: each as allreduce;
 *   barrier.
 * stdout: "rank R of N backend B digest D order-sensitive K" per rank, where D hashes every result
 * (two runs must print the same lines) and K counts the allreduce elements whose sum in reverse
 * rank order has other bits (K > 0 shows the bitwise check could fail). Mismatches: "FAIL ..."
 * on stderr, exit 1.
 *
 * --timeout S   the collectives' deadline (dfm_dist_opts.timeout_s)
 * --fail MODE   the last rank misbehaves before the first collective: exit (exit(3)), hang
 *               (sleeps 10 minutes), abort (dfm_dist_abort with code 5); the others run on.
 * Not a benchmark: sizes are small enough for busy test machines. */
#include "base/error.h"
#include "dist/dist.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_failed;
static uint64_t g_digest = 1469598103934665603ull; /* FNV-1a */

static void digest(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) g_digest = (g_digest ^ b[i]) * 1099511628211ull;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Input element i of rank r for test `tag`: a double in +-[2^-8, 2^8). */
static double gen(uint64_t tag, int r, size_t i)
{
    uint64_t h = mix(tag * 0x100000001b3ull ^ mix((uint64_t)r << 40 ^ (uint64_t)i));
    double m = (double)(h >> 11) * 0x1p-53 * 2 - 1;
    int e = (int)((h >> 3) % 17) - 8;
    return m * (double)(1 << (e + 8)) / 256.0;
}

static void fill(void *dst, dfm_dtype dt, uint64_t tag, int r, size_t start, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == DFM_F32) ((float *)dst)[i] = (float)gen(tag, r, start + i);
        else ((double *)dst)[i] = gen(tag, r, start + i);
    }
}

/* want[i] = rank-ordered sum over ranks of element start + i; *rev counts the elements whose
 * reverse-order sum differs in bits. */
static void ref_sum(void *want, dfm_dtype dt, uint64_t tag, int size, size_t start, size_t n, long *rev)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == DFM_F32) {
            float s = (float)gen(tag, 0, start + i), t = (float)gen(tag, size - 1, start + i);
            for (int q = 1; q < size; q++) s += (float)gen(tag, q, start + i);
            for (int q = size - 2; q >= 0; q--) t += (float)gen(tag, q, start + i);
            ((float *)want)[i] = s;
            if (rev && memcmp(&s, &t, sizeof s)) ++*rev;
        } else {
            double s = gen(tag, 0, start + i), t = gen(tag, size - 1, start + i);
            for (int q = 1; q < size; q++) s += gen(tag, q, start + i);
            for (int q = size - 2; q >= 0; q--) t += gen(tag, q, start + i);
            ((double *)want)[i] = s;
            if (rev && memcmp(&s, &t, sizeof s)) ++*rev;
        }
    }
}

static void compare(const char *what, const void *got, const void *want, size_t n, size_t es, int rank)
{
    digest(got, n * es);
    if (!memcmp(got, want, n * es)) return;
    size_t i;
    for (i = 0; i < n && !memcmp((const char *)got + i * es, (const char *)want + i * es, es); i++) {
    }
    fprintf(stderr, "FAIL rank %d: %s: element %zu of %zu differs from the rank-ordered reference\n",
            rank, what, i, n);
    g_failed = 1;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "dfm-dist-check: error: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* A collective's failure: this rank leaves the others waiting, so the job goes down. */
static void check_rc(dfm_dist *d, int rc, const char *what)
{
    if (rc >= 0) return;
    char msg[600];
    snprintf(msg, sizeof msg, "dfm-dist-check: %s: %s", what, dfm_errmsg());
    dfm_dist_abort(d, 1, msg);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"timeout", 1, 0, 't'}, {"fail", 1, 0, 'f'}, {0, 0, 0, 0}};
    double timeout = 0;
    const char *fail_mode = NULL;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (c == 't') timeout = atof(optarg);
        else if (c == 'f') fail_mode = optarg;
        else {
            fprintf(stderr, "usage: dfm-dist-check [--timeout S] [--fail exit|hang|abort]\n");
            return 2;
        }
    }
    dfm_dist_opts o = {timeout, DFM_CPU};
    dfm_dist *d = NULL;
    if (dfm_dist_init(&d, &o) < 0) {
        fprintf(stderr, "dfm-dist-check: error: %s\n", dfm_errmsg());
        return 1;
    }
    const int R = dfm_dist_rank(d), S = dfm_dist_size(d);
    if (fail_mode && R == S - 1) {
        if (!strcmp(fail_mode, "exit")) exit(3);
        if (!strcmp(fail_mode, "hang")) sleep(600);
        if (!strcmp(fail_mode, "abort")) dfm_dist_abort(d, 5, "dfm-dist-check: asked to fail (--fail abort)");
    }
    static const size_t sizes[] = {0, 1, 7, 1000003};
    static const dfm_dtype dts[] = {DFM_F32, DFM_DIST_F64};
    long rev = 0;
    for (int t = 0; t < 2; t++) {
        dfm_dtype dt = dts[t];
        size_t es = dt == DFM_F32 ? 4 : 8;
        const char *dn = dt == DFM_F32 ? "F32" : "F64";
        for (int k = 0; k < 4; k++) {
            char what[64];
            /* allreduce */
            size_t n = sizes[k];
            uint64_t tag = 100 + 10 * (uint64_t)t + (uint64_t)k;
            void *buf = xmalloc(n * es), *want = xmalloc(n * es);
            fill(buf, dt, tag, R, 0, n);
            check_rc(d, dfm_dist_allreduce(d, buf, n, dt, DFM_CPU), "allreduce");
            ref_sum(want, dt, tag, S, 0, n, &rev);
            snprintf(what, sizeof what, "allreduce %s n=%zu", dn, n);
            compare(what, buf, want, n, es, R);
            free(buf), free(want);
            /* reduce_scatter: ~n in all, n / S per rank */
            size_t m = k < 3 ? n : n / (size_t)S;
            tag += 1000;
            void *send = xmalloc(m * (size_t)S * es), *recv = xmalloc(m * es);
            want = xmalloc(m * es);
            fill(send, dt, tag, R, 0, m * (size_t)S);
            check_rc(d, dfm_dist_reduce_scatter(d, send, recv, m, dt, DFM_CPU), "reduce_scatter");
            ref_sum(want, dt, tag, S, (size_t)R * m, m, NULL);
            snprintf(what, sizeof what, "reduce_scatter %s n=%zu", dn, m);
            compare(what, recv, want, m, es, R);
            free(send), free(recv), free(want);
            /* allgather */
            tag += 1000;
            send = xmalloc(m * es), recv = xmalloc(m * (size_t)S * es), want = xmalloc(m * (size_t)S * es);
            fill(send, dt, tag, R, 0, m);
            for (int q = 0; q < S; q++) fill((char *)want + (size_t)q * m * es, dt, tag, q, 0, m);
            check_rc(d, dfm_dist_allgather(d, send, recv, m, dt, DFM_CPU), "allgather");
            snprintf(what, sizeof what, "allgather %s n=%zu", dn, m);
            compare(what, recv, want, m * (size_t)S, es, R);
            free(send), free(recv), free(want);
        }
    }
    /* allgather of bytes (U8), in place: this rank's block of recv is the send buffer */
    {
        size_t m = 5;
        unsigned char *recv = xmalloc(m * (size_t)S), *want = xmalloc(m * (size_t)S);
        for (int q = 0; q < S; q++)
            for (size_t i = 0; i < m; i++) want[(size_t)q * m + i] = (unsigned char)(mix((uint64_t)q * 7 + i) >> 56);
        memset(recv, 0xEE, m * (size_t)S);
        memcpy(recv + (size_t)R * m, want + (size_t)R * m, m);
        check_rc(d, dfm_dist_allgather(d, recv + (size_t)R * m, recv, m, DFM_U8, DFM_CPU), "allgather");
        compare("allgather U8 in place n=5", recv, want, m * (size_t)S, 1, R);
        free(recv), free(want);
    }
    static const size_t bsizes[] = {0, 1, 7, 3000001};
    for (int k = 0; k < 4; k++) {
        size_t n = bsizes[k];
        unsigned char *buf = xmalloc(n), *want = xmalloc(n);
        for (size_t i = 0; i < n; i++) want[i] = (unsigned char)(mix(i + 77 * (uint64_t)k) >> 56);
        if (R == S - 1) memcpy(buf, want, n);
        else memset(buf, 0xEE, n);
        check_rc(d, dfm_dist_broadcast(d, buf, n, S - 1, DFM_CPU), "broadcast");
        char what[64];
        snprintf(what, sizeof what, "broadcast from rank %d of %zu bytes", S - 1, n);
        compare(what, buf, want, n, 1, R);
        free(buf), free(want);
    }
    /* allreduce_async: sums queued while this thread goes on, in the order queued */
    {
        static const size_t an[5] = {7, 1000003, 0, 300001, 5};
        static const dfm_dtype at[5] = {DFM_F32, DFM_DIST_F64, DFM_F32, DFM_F32, DFM_DIST_F64};
        void *bufs[5];
        for (int k = 0; k < 5; k++) {
            size_t es = at[k] == DFM_F32 ? 4 : 8;
            bufs[k] = xmalloc(an[k] * es);
            fill(bufs[k], at[k], 500 + (uint64_t)k, R, 0, an[k]);
            if (k < 4) check_rc(d, dfm_dist_allreduce_async(d, bufs[k], an[k], at[k], DFM_CPU), "allreduce_async");
            else check_rc(d, dfm_dist_allreduce(d, bufs[k], an[k], at[k], DFM_CPU), "allreduce behind the queue");
        }
        check_rc(d, dfm_dist_wait(d), "dfm_dist_wait");
        for (int k = 0; k < 5; k++) {
            size_t es = at[k] == DFM_F32 ? 4 : 8;
            void *want = xmalloc(an[k] * es);
            ref_sum(want, at[k], 500 + (uint64_t)k, S, 0, an[k], NULL);
            char what[64];
            snprintf(what, sizeof what, "allreduce%s %s n=%zu", k < 4 ? "_async" : " after async",
                     at[k] == DFM_F32 ? "F32" : "F64", an[k]);
            compare(what, bufs[k], want, an[k], es, R);
            free(want), free(bufs[k]);
        }
    }
    check_rc(d, dfm_dist_barrier(d), "barrier");
    printf("rank %d of %d backend %s digest %016llx order-sensitive %ld\n", R, S, dfm_dist_backend(d),
           (unsigned long long)g_digest, rev);
    fflush(stdout);
    dfm_dist_free(d);
    return g_failed;
}
