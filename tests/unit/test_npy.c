/* test_npy.c — .npy build/parse: numpy-identical headers, tolerant parsing, strict rejection,
 * and truncated/corrupted inputs that must fail cleanly (run under SAN=1 too). */
#include "test.h"
#include "base/error.h"
#include "io/npy.h"

#include <stdint.h>
#include <stdlib.h>

/* np.save(io.BytesIO(), np.zeros((3, 4), np.float32)) with numpy 2.4, header part */
static const char NUMPY_F4_3x4[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"
    "                                                          \n";

TEST(npy_header_matches_numpy)
{
    int64_t shape[2] = {3, 4};
    uint8_t *h;
    size_t hl;
    CHECK_EQ(dfm_npy_header(DFM_NPY_F32, 2, shape, &h, &hl), 0);
    CHECK_EQ(hl, 128);
    CHECK_EQ(sizeof NUMPY_F4_3x4 - 1, 128);
    CHECK(hl == 128 && !memcmp(h, NUMPY_F4_3x4, 128));
    free(h);
    /* every header is a multiple of 64 and ends in '\n', even long shapes */
    int64_t big[8] = {123456789012LL, 2, 3, 4, 5, 6, 7, 8};
    for (int nd = 0; nd <= 8; nd++) {
        CHECK_EQ(dfm_npy_header(DFM_NPY_U8, nd, big, &h, &hl), 0);
        CHECK_EQ(hl % 64, 0);
        CHECK_EQ(h[hl - 1], '\n');
        CHECK_EQ(h[8] | h[9] << 8, hl - 10);
        free(h);
    }
}

TEST(npy_roundtrip_dtypes_shapes)
{
    const dfm_npy_dtype types[] = {DFM_NPY_U8, DFM_NPY_I32, DFM_NPY_I64, DFM_NPY_F16, DFM_NPY_F32};
    const char *descr[] = {"|u1", "<i4", "<i8", "<f2", "<f4"};
    const int64_t shapes[][4] = {{0}, {5}, {2, 3, 4}, {0, 7}, {1, 1, 1, 3}};
    const int ndims[] = {0, 1, 3, 2, 4};
    uint8_t data[2 * 3 * 4 * 8];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + 1);
    for (int t = 0; t < 5; t++) {
        CHECK_STR(dfm_npy_descr(types[t]), descr[t]);
        for (int k = 0; k < 5; k++) {
            uint8_t *buf;
            size_t len;
            CHECK_EQ(dfm_npy_build(types[t], ndims[k], shapes[k], data, &buf, &len), 0);
            CHECK_EQ(buf[len], 0);
            dfm_npy a;
            CHECK_EQ(dfm_npy_parse(buf, len, &a), 0);
            CHECK_EQ(a.dtype, types[t]);
            CHECK_EQ(a.ndim, ndims[k]);
            size_t count = 1;
            for (int d = 0; d < ndims[k]; d++) {
                CHECK_EQ(a.shape[d], shapes[k][d]);
                count *= (size_t)shapes[k][d];
            }
            CHECK_EQ(a.nbytes, count * dfm_npy_itemsize(types[t]));
            CHECK(a.data == buf + len - a.nbytes);
            CHECK(!memcmp(a.data, data, a.nbytes));
            CHECK_EQ((size_t)(a.data - buf) % 64, 0);
            free(buf);
        }
    }
}

static int parse_hdr(const char *dict, int version, dfm_npy *out, uint8_t **keep)
{
    size_t dl = strlen(dict), pre = version == 1 ? 10 : 12;
    uint8_t *b = malloc(pre + dl + 64);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (uint8_t)version;
    b[7] = 0;
    b[8] = (uint8_t)(dl & 0xff);
    b[9] = (uint8_t)(dl >> 8);
    if (version != 1) b[10] = b[11] = 0;
    memcpy(b + pre, dict, dl);
    /* data: 3 f4 values if the shape says so; callers pick dicts whose data is 12 bytes */
    memset(b + pre + dl, 0, 12);
    int rc = dfm_npy_parse(b, pre + dl + 12, out);
    if (keep) *keep = b;
    else free(b);
    return rc;
}

TEST(npy_parse_tolerant)
{
    const char *ok[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n",
        "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(3,)}",
        "{ 'shape' : ( 3 , ) ,'fortran_order' : False , 'descr' : '<f4' }      \n",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3L,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }",
        "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }",
        "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 3, 1), }\n",
    };
    for (int i = 0; i < 7; i++)
        for (int v = 1; v <= 2; v++) {
            dfm_npy a;
            int rc = parse_hdr(ok[i], v, &a, NULL);
            CHECK_EQ(rc, 0);
            if (rc) fprintf(stderr, "  case %d v%d: %s\n", i, v, dfm_errmsg());
            CHECK_EQ(a.nbytes, 12);
        }
    dfm_npy a;
    CHECK_EQ(parse_hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 3, &a, NULL), 0);
}

TEST(npy_parse_rejects)
{
    struct {
        const char *dict;
        int code;
    } bad[] = {
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }", DFM_E_UNSUPPORTED},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", DFM_E_UNSUPPORTED},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", DFM_E_UNSUPPORTED},
        {"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", DFM_E_UNSUPPORTED},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", DFM_E_UNSUPPORTED},
        {"{'descr': '<f4', 'shape': (3,), }", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", DFM_E_FORMAT},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } junk", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,4), }", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }",
         DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,3), }",
         DFM_E_UNSUPPORTED},
        {"{'descr': '<f4", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3,), }", DFM_E_FORMAT},
        {"['descr', '<f4']", DFM_E_FORMAT},
        {"", DFM_E_FORMAT},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,", DFM_E_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dfm_npy a;
        int rc = parse_hdr(bad[i].dict, 1, &a, NULL);
        CHECK_EQ(rc, bad[i].code);
        if (rc != bad[i].code) fprintf(stderr, "  case %zu: %s\n", i, bad[i].dict);
        CHECK(a.data == NULL);
    }
    /* bad magic, unknown version, header length past the end */
    uint8_t *buf;
    size_t len;
    int64_t shape[1] = {3};
    float v[3] = {1, 2, 3};
    CHECK_EQ(dfm_npy_build(DFM_NPY_F32, 1, shape, v, &buf, &len), 0);
    dfm_npy a;
    buf[1] = 'X';
    CHECK_EQ(dfm_npy_parse(buf, len, &a), DFM_E_FORMAT);
    buf[1] = 'N';
    buf[6] = 4;
    CHECK_EQ(dfm_npy_parse(buf, len, &a), DFM_E_UNSUPPORTED);
    buf[6] = 1;
    buf[9] = 0xff;
    CHECK_EQ(dfm_npy_parse(buf, len, &a), DFM_E_FORMAT);
    buf[9] = 0;
    CHECK_EQ(dfm_npy_parse(buf, len, &a), 0);
    CHECK_EQ(dfm_npy_parse(buf, len - 1, &a), DFM_E_FORMAT);  /* truncated data */
    CHECK_EQ(dfm_npy_parse(buf, len + 1, &a), DFM_E_FORMAT);  /* one byte of garbage (the NUL) */
    free(buf);
    /* building rejects what it cannot describe */
    int64_t neg[2] = {2, -1}, huge[3] = {INT64_MAX, INT64_MAX, 2};
    CHECK_EQ(dfm_npy_build(DFM_NPY_U8, 2, neg, v, &buf, &len), DFM_E_ARG);
    CHECK_EQ(dfm_npy_build(DFM_NPY_U8, 3, huge, v, &buf, &len), DFM_E_LIMIT);
    CHECK_EQ(dfm_npy_build(DFM_NPY_U8, 9, shape, v, &buf, &len), DFM_E_ARG);
    CHECK(buf == NULL);
}

/* Every prefix and many random corruptions: clean errors, no reads out of bounds (ASan). */
TEST(npy_fuzz)
{
    int64_t shape[3] = {2, 3, 2};
    uint16_t v[12] = {0};
    uint8_t *buf;
    size_t len;
    CHECK_EQ(dfm_npy_build(DFM_NPY_F16, 3, shape, v, &buf, &len), 0);
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *c = malloc(cut ? cut : 1); /* exact-size copies so ASan sees any overrun */
        memcpy(c, buf, cut);
        dfm_npy a;
        CHECK(dfm_npy_parse(c, cut, &a) < 0);
        free(c);
    }
    uint32_t seed = 777;
    int ok = 0;
    for (int k = 0; k < 20000; k++) {
        uint8_t *c = malloc(len);
        memcpy(c, buf, len);
        for (int m = 0; m < 1 + k % 4; m++) {
            seed = seed * 1664525u + 1013904223u;
            size_t at = (seed >> 8) % 128; /* the header */
            c[at] = (uint8_t)(seed >> 24);
        }
        dfm_npy a;
        int rc = dfm_npy_parse(c, len, &a);
        if (rc == 0) {
            ok++;
            CHECK(a.data >= c && a.data + a.nbytes == c + len);
        }
        free(c);
    }
    CHECK(ok < 20000);
    free(buf);
}
