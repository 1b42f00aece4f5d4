/* test_tb_events.c — TensorBoard event files: CRC32C, records byte-identical to tensorboard's own
 * writer, write/read round trips of awkward values, truncated and corrupted files, and the purge
 * a resumed run needs.
 *
 * Two tests double as the C side of tests/pipeline/interop_tensorboard.sh:
 *   DFM_TB_OUT=DIR dfm-unit-tests tb_events_write_for_interop
 *       writes the interop run (a "crashed" run purged after step 9, then the resumed run) into
 *       DIR instead of a scratch directory; the script reads DIR with TensorBoard's
 *       EventAccumulator.
 *   DFM_TB_IN=FILE DFM_TB_LIST=LIST dfm-unit-tests tb_events_read_for_interop
 *       reads FILE (written by Python) with dfm_tb_read and lists every scalar in LIST, one
 *       "tag<TAB>step<TAB>%.9g value<TAB>%.17g wall_time" line each, for the script to compare.
 * Without those variables both run as ordinary self-checking tests.
 */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "io/tb_events.h"

#include <dirent.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Records written by tensorboard 2.21.0's EventFileWriter (protobuf 7.36.2), in
 * /tmp/venv-wan:
 *   w = EventFileWriter("logs")
 *   w.add_event(event_pb2.Event(wall_time=1700000000.25, step=1234567, summary=
 *       summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss/train", simple_value=0.125)])))
 *   w.add_event(... wall_time=1700000001.5, step=-3, tag="lr/\u00e9t\u00e9", simple_value=float("-inf"))
 *   w.close()
 * then the second and third records of the file, as hex. */
static const char *PY_RECORDS[2] = {
    "220000000000000078113dfd0900001040fc54d9411087ad4b2a130a110a0a6c6f73732f747261696e1500"
    "00003e6ed40ad0",
    "2700000000000000bbe1b1460900006040fc54d94110fdffffffffffffffff012a110a0f0a086c722fc3a9"
    "74c3a915000080ff9f2f5962",
};

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (uint8_t)v;
    }
    return n;
}

/* ---- collecting what dfm_tb_read delivers ------------------------------------------------ */

#define MAX_SEEN 4096
typedef struct {
    int n;
    char *tag[MAX_SEEN];
    int64_t step[MAX_SEEN];
    float value[MAX_SEEN];
    double wall[MAX_SEEN];
    int stop_after; /* 0: never */
} seen;

static int collect(void *ctx, const char *tag, int64_t step, float value, double wall_time)
{
    seen *s = ctx;
    if (s->n == MAX_SEEN) return -100;
    s->tag[s->n] = strdup(tag);
    s->step[s->n] = step;
    s->value[s->n] = value;
    s->wall[s->n] = wall_time;
    s->n++;
    return s->stop_after && s->n == s->stop_after ? 7 : 0;
}

static void seen_free(seen *s)
{
    for (int i = 0; i < s->n; i++) free(s->tag[i]);
    s->n = 0;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

/* The events files of dir, sorted by name (how TensorBoard orders them); returns the count. */
static int list_events(const char *dir, char names[][512], int max)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max)
        if (strstr(de->d_name, "tfevents")) snprintf(names[n++], 512, "%s/%s", dir, de->d_name);
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[512];
            memcpy(t, names[j], 512);
            memcpy(names[j], names[j - 1], 512);
            memcpy(names[j - 1], t, 512);
        }
    return n;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))) n++;
    closedir(d);
    return n;
}

static int write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* ---- CRC ---------------------------------------------------------------------------------- */

static uint32_t crc32c_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return ~c;
}

TEST(tb_events_crc32c)
{
    CHECK_EQ(dfm_tb_crc32c("123456789", 9), 0xE3069283u);
    CHECK_EQ(dfm_tb_crc32c("", 0), 0);
    /* RFC 3720 B.4: 32 bytes of zeros */
    uint8_t z[32] = {0};
    CHECK_EQ(dfm_tb_crc32c(z, 32), 0x8A9136AAu);
    /* the table against the bit-at-a-time definition, every length 0..300 */
    uint8_t buf[300];
    uint32_t x = 12345;
    for (int i = 0; i < 300; i++) buf[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
    for (size_t n = 0; n <= sizeof buf; n++) CHECK_EQ(dfm_tb_crc32c(buf, n), crc32c_bitwise(buf, n));
    uint32_t c = 0xE3069283u;
    CHECK_EQ(dfm_tb_masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

/* ---- bytes against tensorboard's writer ---------------------------------------------------- */

TEST(tb_events_bytes_match_tensorboard)
{
    struct {
        const char *tag;
        int64_t step;
        float value;
        double wall;
    } ev[2] = {{"loss/train", 1234567, 0.125f, 1700000000.25},
               {"lr/\xc3\xa9t\xc3\xa9", -3, -INFINITY, 1700000001.5}};
    for (int i = 0; i < 2; i++) {
        uint8_t want[256];
        size_t wn = unhex(PY_RECORDS[i], want);
        dfm_buf e = {0}, r = {0};
        CHECK_EQ(dfm_tb_scalar_event(&e, ev[i].tag, ev[i].step, ev[i].value, ev[i].wall), 0);
        CHECK_EQ(dfm_tb_record_append(&r, e.data, e.len), 0);
        CHECK_EQ(r.len, wn);
        CHECK(r.len == wn && !memcmp(r.data, want, wn));
        dfm_buf_free(&e);
        dfm_buf_free(&r);
    }
    /* proto3 leaves out zero wall_time and step: the event is the summary alone */
    dfm_buf e = {0};
    CHECK_EQ(dfm_tb_scalar_event(&e, "a", 0, 0.0f, 0.0), 0);
    /* Event(summary=Summary(value=[Value(tag="a", simple_value=0.0)])).SerializeToString() */
    static const uint8_t zero_ev[] = {0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0, 0, 0, 0};
    CHECK(e.len == sizeof zero_ev && !memcmp(e.data, zero_ev, sizeof zero_ev));
    /* bad tags are refused */
    e.len = 0;
    CHECK_EQ(dfm_tb_scalar_event(&e, "", 1, 1.0f, 1.0), DFM_E_ARG);
    CHECK_EQ(dfm_tb_scalar_event(&e, "bad\xff", 1, 1.0f, 1.0), DFM_E_ARG);
    CHECK_EQ(e.len, 0);
    dfm_buf_free(&e);
}

/* The Python records above, after a file_version event as tensorboard writes it (with
 * source_metadata, field 10, which we skip); with DFM_TB_IN set, that file instead. */
TEST(tb_events_read_for_interop)
{
    const char *in = getenv("DFM_TB_IN"), *list = getenv("DFM_TB_LIST");
    char path[600];
    if (!in) {
        /* Event{wall_time=1.5, file_version="brain.Event:2", source_metadata={writer="py"}} */
        static const uint8_t fv[] = {0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x1a, 0x0d, 'b', 'r', 'a',
                                     'i',  'n', '.', 'E', 'v', 'e', 'n', 't', ':', '2', 0x52,
                                     0x04, 0x0a, 0x02, 'p', 'y'};
        dfm_buf f = {0};
        CHECK_EQ(dfm_tb_record_append(&f, fv, sizeof fv), 0);
        for (int i = 0; i < 2; i++) {
            uint8_t r[256];
            size_t n = unhex(PY_RECORDS[i], r);
            dfm_buf_append(&f, r, n);
        }
        snprintf(path, sizeof path, "%s/py.tfevents", dfm_test_tmpdir());
        CHECK_EQ(write_bytes(path, f.data, f.len), 0);
        dfm_buf_free(&f);
        in = path;
    }
    static seen s;
    int trunc = -1;
    CHECK_EQ(dfm_tb_read(in, collect, &s, &trunc), 0);
    if (getenv("DFM_TB_IN")) {
        if (trunc) fprintf(stderr, "  %s: truncated\n", in);
        FILE *o = list ? fopen(list, "w") : stdout;
        CHECK(o != NULL);
        for (int i = 0; o && i < s.n; i++)
            fprintf(o, "%s\t%lld\t%.9g\t%.17g\n", s.tag[i], (long long)s.step[i], s.value[i],
                    s.wall[i]);
        if (o && o != stdout) CHECK_EQ(fclose(o), 0);
    } else {
        CHECK_EQ(trunc, 0);
        CHECK_EQ(s.n, 2);
        if (s.n == 2) {
            CHECK_STR(s.tag[0], "loss/train");
            CHECK_EQ(s.step[0], 1234567);
            CHECK(s.value[0] == 0.125f);
            CHECK(s.wall[0] == 1700000000.25);
            CHECK_STR(s.tag[1], "lr/\xc3\xa9t\xc3\xa9");
            CHECK_EQ(s.step[1], -3);
            CHECK(s.value[1] == -INFINITY);
            CHECK(s.wall[1] == 1700000001.5);
        }
    }
    seen_free(&s);
}

/* ---- round trip ----------------------------------------------------------------------------- */

TEST(tb_events_roundtrip)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tb_rt/run", dfm_test_tmpdir());
    dfm_tb *tb;
    CHECK_EQ(dfm_tb_open(&tb, dir), DFM_E_IO); /* the parent must exist */
    snprintf(dir, sizeof dir, "%s/tb_rt", dfm_test_tmpdir());
    CHECK_EQ(dfm_tb_open(&tb, dir), 0);
    if (!tb) return;
    const char *p = strrchr(dfm_tb_path(tb), '/');
    CHECK(p && !strncmp(p, "/events.out.tfevents.", 21));
    CHECK(p && strlen(p) > 21 + 10 && p[21 + 10] == '.'); /* ten-digit seconds, then host */

    static const float special[] = {NAN, INFINITY, -INFINITY, -0.0f, 0.0f, FLT_MAX, -FLT_MAX,
                                    FLT_MIN, 1e-45f /* denormal */, 1.0f, -3.25f, 123456.789f};
    static const int64_t steps[] = {0, 1, -1, INT64_MAX, INT64_MIN, 127, 128, 16383, 16384,
                                    (int64_t)1 << 35, -((int64_t)1 << 40), 999999999999LL};
    char long_tag[3000];
    for (int i = 0; i < (int)sizeof long_tag - 1; i++) long_tag[i] = (char)('a' + i % 26);
    long_tag[sizeof long_tag - 1] = 0;
    const char *tags[] = {"loss", "train/loss_ema", "\xe6\x8d\x9f\xe5\xa4\xb1/\xf0\x9f\x94\xa5",
                          long_tag, "x"};
    enum { N = 1500 };
    static float vals[N];
    static int64_t st[N];
    static double wt[N];
    static int ti[N];
    uint32_t x = 7;
    for (int i = 0; i < N; i++) {
        x = x * 1664525u + 1013904223u;
        vals[i] = i < 12 ? special[i] : (float)((int32_t)x) / 65536.0f;
        st[i] = i < 12 ? steps[i] : (int64_t)i * 1000003;
        wt[i] = i == 3 ? 0.0 : 1700000000.0 + i * 0.001;
        ti[i] = i % 5;
        CHECK_EQ(dfm_tb_scalar_at(tb, tags[ti[i]], st[i], vals[i], wt[i]), 0);
    }
    CHECK_EQ(dfm_tb_scalar(tb, "now", 5, 2.0f), 0);
    CHECK_EQ(dfm_tb_scalar(tb, "", 5, 2.0f), DFM_E_ARG); /* the writer stays usable */
    CHECK_EQ(dfm_tb_flush(tb), 0);
    char path[600];
    snprintf(path, sizeof path, "%s", dfm_tb_path(tb));
    CHECK_EQ(dfm_tb_close(tb), 0);

    static seen s;
    int trunc = -1;
    CHECK_EQ(dfm_tb_read(path, collect, &s, &trunc), 0);
    CHECK_EQ(trunc, 0);
    CHECK_EQ(s.n, N + 1);
    for (int i = 0; i < N && i < s.n; i++) {
        if (strcmp(s.tag[i], tags[ti[i]]) || s.step[i] != st[i] ||
            fbits(s.value[i]) != fbits(vals[i]) || dbits(s.wall[i]) != dbits(wt[i])) {
            fprintf(stderr, "  event %d differs: step %lld value %g\n", i, (long long)s.step[i],
                    s.value[i]);
            dfm_test_failures++;
            break;
        }
    }
    if (s.n == N + 1) {
        CHECK_STR(s.tag[N], "now");
        CHECK(s.wall[N] > 1.6e9 && s.wall[N] < 4e9);
    }
    seen_free(&s);

    /* the file starts with Event{wall_time, file_version: "brain.Event:2"} */
    dfm_buf f = {0};
    CHECK_EQ(dfm_read_file(path, 0, &f), 0);
    CHECK(f.len > 40 && f.data[0] == 24 && f.data[12] == 0x09 && f.data[21] == 0x1a &&
          f.data[22] == 13 && !memcmp(f.data + 23, "brain.Event:2", 13));
    dfm_buf_free(&f);

    /* a callback that returns nonzero stops the read with its value */
    s.stop_after = 3;
    CHECK_EQ(dfm_tb_read(path, collect, &s, NULL), 7);
    CHECK_EQ(s.n, 3);
    seen_free(&s);
    s.stop_after = 0;

    /* two writers in one second get two files, whose names sort in the order they were opened
     * (seq alone would not: "10" < "9") */
    dfm_tb *a, *b;
    CHECK_EQ(dfm_tb_open(&a, dir), 0);
    CHECK_EQ(dfm_tb_open(&b, dir), 0);
    if (a && b) CHECK(strcmp(dfm_tb_path(a), dfm_tb_path(b)) < 0);
    if (a) CHECK(strcmp(path, dfm_tb_path(a)) < 0);
    CHECK_EQ(dfm_tb_close(a), 0);
    CHECK_EQ(dfm_tb_close(b), 0);
    CHECK_EQ(count_entries(dir), 3);
    /* twelve more: seq passes 9 -> 10 and the names still sort in opening order */
    char prev[600];
    snprintf(prev, sizeof prev, "%s", path);
    for (int i = 0; i < 12; i++) {
        CHECK_EQ(dfm_tb_open(&a, dir), 0);
        if (!a) break;
        CHECK(strcmp(prev, dfm_tb_path(a)) < 0);
        snprintf(prev, sizeof prev, "%s", dfm_tb_path(a));
        CHECK_EQ(dfm_tb_close(a), 0);
    }
    CHECK_EQ(dfm_tb_read("/nonexistent/events", collect, &s, NULL), DFM_E_IO);
}

/* ---- truncation and corruption -------------------------------------------------------------- */

/* A file with a file_version event and k scalar events; *ends lists where each record ends. */
static int small_file(const char *path, int k, size_t *ends, dfm_buf *out)
{
    static const uint8_t fv[] = {0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x1a, 0x0d, 'b', 'r', 'a',
                                 'i',  'n', '.', 'E', 'v', 'e', 'n', 't', ':', '2'};
    memset(out, 0, sizeof *out);
    dfm_tb_record_append(out, fv, sizeof fv);
    ends[0] = out->len;
    for (int i = 0; i < k; i++) {
        dfm_buf e = {0};
        dfm_tb_scalar_event(&e, i % 2 ? "loss" : "grad_norm", i, (float)i * 0.5f, 100.0 + i);
        dfm_tb_record_append(out, e.data, e.len);
        dfm_buf_free(&e);
        ends[i + 1] = out->len;
    }
    return write_bytes(path, out->data, out->len);
}

TEST(tb_events_truncated)
{
    char path[600];
    snprintf(path, sizeof path, "%s/trunc.tfevents", dfm_test_tmpdir());
    size_t ends[6];
    dfm_buf full;
    CHECK_EQ(small_file(path, 5, ends, &full), 0);
    /* every cut: the complete records before it are delivered; truncated unless the cut falls on
     * a record boundary */
    for (size_t cut = 0; cut <= full.len; cut++) {
        CHECK_EQ(write_bytes(path, full.data, cut), 0);
        int complete = 0, boundary = cut == 0;
        for (int r = 0; r < 6; r++) {
            if (ends[r] <= cut) complete = r; /* scalar records wholly inside */
            if (ends[r] == cut) boundary = 1;
        }
        static seen s;
        int trunc = -1;
        int rc = dfm_tb_read(path, collect, &s, &trunc);
        if (rc != 0 || trunc != !boundary || s.n != complete) {
            fprintf(stderr, "  cut %zu: rc %d truncated %d scalars %d (want %d, %d)\n", cut, rc,
                    trunc, s.n, !boundary, complete);
            dfm_test_failures++;
        }
        seen_free(&s);
        /* without *truncated a cut file is an error */
        rc = dfm_tb_read(path, NULL, NULL, NULL);
        CHECK_EQ(rc, boundary ? 0 : DFM_E_FORMAT);
    }
    dfm_buf_free(&full);
}

TEST(tb_events_corrupt)
{
    char path[600];
    snprintf(path, sizeof path, "%s/bad.tfevents", dfm_test_tmpdir());
    size_t ends[6];
    dfm_buf full;
    CHECK_EQ(small_file(path, 5, ends, &full), 0);
    /* flip each byte of the file in turn: every flip is DFM_E_FORMAT naming the offset of the
     * record it hit (a flipped length is caught by the length CRC before it is used), and the
     * scalars before that record are delivered */
    for (size_t i = 0; i < full.len; i++) {
        int rec = 0;
        while (ends[rec] <= i) rec++;
        size_t start = rec ? ends[rec - 1] : 0;
        full.data[i] ^= 0x10;
        CHECK_EQ(write_bytes(path, full.data, full.len), 0);
        full.data[i] ^= 0x10;
        static seen s;
        int trunc = 0;
        int rc = dfm_tb_read(path, collect, &s, &trunc);
        char want[64];
        snprintf(want, sizeof want, "byte offset %zu", start);
        if (rc != DFM_E_FORMAT || !strstr(dfm_errmsg(), want) || s.n != rec - (rec > 0)) {
            fprintf(stderr, "  flip at %zu: rc %d '%s', %d scalars before\n", i, rc, dfm_errmsg(),
                    s.n);
            dfm_test_failures++;
        }
        seen_free(&s);
    }
    /* a record with valid CRCs that is not an Event (a group wire type) */
    dfm_buf g = {0};
    dfm_tb_record_append(&g, "\x0b\x0c", 2);
    CHECK_EQ(write_bytes(path, g.data, g.len), 0);
    CHECK_EQ(dfm_tb_read(path, NULL, NULL, NULL), DFM_E_FORMAT);
    /* a summary value whose length runs past the summary */
    g.len = 0;
    dfm_tb_record_append(&g, "\x2a\x03\x0a\x05\x0a", 5);
    CHECK_EQ(write_bytes(path, g.data, g.len), 0);
    CHECK_EQ(dfm_tb_read(path, NULL, NULL, NULL), DFM_E_FORMAT);
    /* unknown fields and non-scalar values are skipped: Event(step=5, summary=Summary(value=[
     * Value(tag="i", image=Image()), Value(tag="s", simple_value=1.0)])) as protobuf writes it,
     * then an unknown field 103 (varint 1) */
    g.len = 0;
    static const uint8_t ev[] = {0x10, 0x05, 0x2a, 0x11, 0x0a, 0x05, 0x0a, 0x01, 'i', 0x22, 0x00,
                                 0x0a, 0x08, 0x0a, 0x01, 's', 0x15, 0, 0, 0x80, 0x3f,
                                 0xb8, 0x06, 0x01};
    dfm_tb_record_append(&g, ev, sizeof ev);
    /* a value whose simple_value is replaced by a later member of the same oneof (an empty
     * image, field 4): protobuf keeps the last, so it is no scalar */
    static const uint8_t ev2[] = {0x2a, 0x0c, 0x0a, 0x0a, 0x0a, 0x01, 'x', 0x15, 0, 0, 0, 0x40,
                                  0x22, 0x00};
    dfm_tb_record_append(&g, ev2, sizeof ev2);
    /* oneof what: a file_version after the summary replaces it (no scalar); a summary after a
     * file_version replaces that (a scalar). wall_time as a varint (field 1, wire type 0) is an
     * unknown field to protobuf: skipped, wall_time stays 0. */
    static const uint8_t ev3[] = {0x08, 0x05, 0x10, 0x07, 0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, 'q',
                                  0x15, 0, 0, 0x80, 0x3f, 0x1a, 0x00};
    static const uint8_t ev4[] = {0x08, 0x05, 0x10, 0x08, 0x1a, 0x00, 0x2a, 0x0a, 0x0a, 0x08, 0x0a,
                                  0x01, 'r', 0x15, 0, 0, 0x80, 0x3f};
    dfm_tb_record_append(&g, ev3, sizeof ev3);
    dfm_tb_record_append(&g, ev4, sizeof ev4);
    CHECK_EQ(write_bytes(path, g.data, g.len), 0);
    static seen s;
    CHECK_EQ(dfm_tb_read(path, collect, &s, NULL), 0);
    CHECK_EQ(s.n, 2);
    if (s.n == 2) {
        CHECK_STR(s.tag[0], "s");
        CHECK_EQ(s.step[0], 5);
        CHECK(s.value[0] == 1.0f);
        CHECK_STR(s.tag[1], "r");
        CHECK_EQ(s.step[1], 8);
        CHECK(s.wall[1] == 0.0);
    }
    seen_free(&s);
    dfm_buf_free(&g);
    dfm_buf_free(&full);
}

/* ---- purge after a resume ------------------------------------------------------------------- */

/* The value of tag at step in an uninterrupted run; `lost` marks the crashed run's points past
 * its checkpoint, which differ so that a leftover one is seen. */
static float run_value(int tag, int64_t step, int lost)
{
    return lost ? 1000.0f + (float)step : (float)(tag + 1) / (float)(step + 1);
}

static const char *RUN_TAGS[3] = {"loss/train", "lr", "m\xc3\xa9trique/\xc3\xa9"};

/* Steps 0..14 with a crash after step 14 and a checkpoint at step 9: the crashed run logs
 * 0..14 (10..14 lost), purge_after(9), the resumed run logs 10..14. lr every 5 steps, the
 * third tag at step 3 only. Returns the purge count in *removed. */
static void write_resumed_run(const char *dir, int *removed)
{
    dfm_tb *tb;
    CHECK_EQ(dfm_tb_open(&tb, dir), 0);
    if (!tb) return;
    for (int64_t s = 0; s < 15; s++) {
        int lost = s > 9;
        CHECK_EQ(dfm_tb_scalar_at(tb, RUN_TAGS[0], s, run_value(0, s, lost), 1.7e9 + s), 0);
        if (s % 5 == 0)
            CHECK_EQ(dfm_tb_scalar_at(tb, RUN_TAGS[1], s, run_value(1, s, lost), 1.7e9 + s), 0);
        if (s == 3)
            CHECK_EQ(dfm_tb_scalar_at(tb, RUN_TAGS[2], s, run_value(2, s, 0), 1.7e9 + s), 0);
    }
    CHECK_EQ(dfm_tb_flush(tb), 0);
    CHECK_EQ(dfm_tb_close(tb), 0); /* as after kill -9 following a flush */
    CHECK_EQ(dfm_tb_purge_after(dir, 9, removed), 0);
    CHECK_EQ(dfm_tb_open(&tb, dir), 0);
    if (!tb) return;
    for (int64_t s = 10; s < 15; s++) {
        CHECK_EQ(dfm_tb_scalar_at(tb, RUN_TAGS[0], s, run_value(0, s, 0), 1.7e9 + 100 + s), 0);
        if (s % 5 == 0)
            CHECK_EQ(dfm_tb_scalar_at(tb, RUN_TAGS[1], s, run_value(1, s, 0), 1.7e9 + 100 + s), 0);
    }
    CHECK_EQ(dfm_tb_close(tb), 0);
}

/* Every scalar of every events file in dir, in name order. */
static void read_dir(const char *dir, seen *s)
{
    static char names[8][512];
    int n = list_events(dir, names, 8);
    for (int i = 0; i < n; i++) {
        int trunc = 0;
        CHECK_EQ(dfm_tb_read(names[i], collect, s, &trunc), 0);
        CHECK_EQ(trunc, 0);
    }
}

TEST(tb_events_purge_after)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tb_purge", dfm_test_tmpdir());
    int removed = -1;
    write_resumed_run(dir, &removed);
    CHECK_EQ(removed, 5 + 1); /* loss 10..14, lr 10 */
    static char names[8][512];
    CHECK_EQ(list_events(dir, names, 8), 2);
    CHECK_EQ(count_entries(dir), 2); /* no temporary left behind */
    /* the resumed run's curves equal the uninterrupted run's: every (tag, step) once, in order */
    static seen s;
    read_dir(dir, &s);
    int k = 0, ok = 1;
    for (int64_t st = 0; st < 15; st++)
        for (int t = 0; t < 3; t++) {
            if ((t == 1 && st % 5) || (t == 2 && st != 3)) continue;
            /* the resumed file holds 10..14: the crashed file's order is by step, then tag */
            int i;
            for (i = 0; i < s.n; i++)
                if (s.step[i] == st && !strcmp(s.tag[i], RUN_TAGS[t])) break;
            if (i == s.n || s.value[i] != run_value(t, st, 0)) ok = 0;
            k++;
        }
    CHECK(ok);
    CHECK_EQ(s.n, k);
    for (int i = 1; i < s.n; i++) CHECK(s.step[i] >= s.step[i - 1]);
    seen_free(&s);

    /* the old file still begins with its file_version event */
    dfm_buf f = {0};
    CHECK_EQ(dfm_read_file(names[0], 0, &f), 0);
    CHECK(f.len > 36 && !memcmp(f.data + 23, "brain.Event:2", 13));
    dfm_buf_free(&f);

    /* nothing past the step: no file is rewritten (same inode) */
    struct stat a, b;
    CHECK_EQ(stat(names[0], &a), 0);
    CHECK_EQ(dfm_tb_purge_after(dir, 14, &removed), 0);
    CHECK_EQ(removed, 0);
    CHECK_EQ(stat(names[0], &b), 0);
    CHECK_EQ(a.st_ino, b.st_ino);
    /* a purge to a lower step reaches every file */
    CHECK_EQ(dfm_tb_purge_after(dir, 4, &removed), 0);
    CHECK_EQ(removed, 10 + 2); /* loss 5..14, lr 5 and 10 */
    read_dir(dir, &s);
    CHECK_EQ(s.n, 5 + 1 + 1);
    for (int i = 0; i < s.n; i++) CHECK(s.step[i] <= 4);
    seen_free(&s);

    /* a truncated tail is dropped by the rewrite; a corrupt file stops the purge untouched */
    dfm_buf full = {0};
    CHECK_EQ(dfm_read_file(names[0], 0, &full), 0);
    CHECK_EQ(write_bytes(names[0], full.data, full.len - 3), 0);
    CHECK_EQ(dfm_tb_purge_after(dir, 100, &removed), 0);
    CHECK_EQ(removed, 0);
    int trunc = -1;
    CHECK_EQ(dfm_tb_read(names[0], NULL, NULL, &trunc), 0);
    CHECK_EQ(trunc, 0);
    full.data[14] ^= 1;
    CHECK_EQ(write_bytes(names[0], full.data, full.len), 0);
    CHECK_EQ(dfm_tb_purge_after(dir, 0, &removed), DFM_E_FORMAT);
    CHECK(strstr(dfm_errmsg(), names[0]) != NULL);
    dfm_buf g = {0};
    CHECK_EQ(dfm_read_file(names[0], 0, &g), 0);
    CHECK(g.len == full.len && !memcmp(g.data, full.data, g.len));
    dfm_buf_free(&g);
    dfm_buf_free(&full);
    CHECK_EQ(dfm_tb_purge_after("/nonexistent/dir", 0, &removed), DFM_E_IO);
}

/* The run tests/pipeline/interop_tensorboard.sh checks with TensorBoard's EventAccumulator:
 * into $DFM_TB_OUT when set (a directory that must not hold events files yet). */
TEST(tb_events_write_for_interop)
{
    const char *out = getenv("DFM_TB_OUT");
    char dir[512];
    if (out) snprintf(dir, sizeof dir, "%s", out);
    else snprintf(dir, sizeof dir, "%s/tb_interop", dfm_test_tmpdir());
    int removed = -1;
    write_resumed_run(dir, &removed);
    CHECK_EQ(removed, 6);
    /* and three special values TensorBoard must carry through */
    dfm_tb *tb;
    CHECK_EQ(dfm_tb_open(&tb, dir), 0);
    if (!tb) return;
    CHECK_EQ(dfm_tb_scalar_at(tb, "special/nan", 20, NAN, 1.7e9 + 200), 0);
    CHECK_EQ(dfm_tb_scalar_at(tb, "special/inf", 21, INFINITY, 1.7e9 + 201), 0);
    CHECK_EQ(dfm_tb_scalar_at(tb, "special/big_step", INT64_MAX, -1.5f, 1.7e9 + 202), 0);
    CHECK_EQ(dfm_tb_close(tb), 0);
    static seen s;
    read_dir(dir, &s);
    CHECK_EQ(s.n, 15 + 3 + 1 + 3);
    seen_free(&s);
}
