/* test_tokenizer.c — the T5/UMT5 tokenizer against the Hugging Face fast tokenizer.
 * Fixtures (scripts/make-tokenizer-fixtures.py): three small SentencePiece Unigram models (nmt_nfkc
 * charsmap, a custom rule set, identity), each as tokenizer.json + spiece.model, and the ids HF
 * gives for ~2,100 generated strings. Every string must give the same ids from both files (and
 * the first 511 + </s> at max_length 512); hand-written tokenizer.json variants for the pipeline
 * features T5 files do not use; truncation, empty and invalid input, grapheme clusters against
 * Rust's unicode-segmentation, corrupt and unsupported files (errors, no crash), and the load time
 * of a 256k-piece vocabulary (printed).
 */
#include "test.h"
#include "base/buf.h"
#include "base/error.h"
#include "text/grapheme.h"
#include "text/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Split a fixture into lines (in place); returns the count. */
static int lines_of(dfm_buf *b, char ***out)
{
    int n = 0, cap = 0;
    char **v = NULL;
    char *p = (char *)b->data, *end = p + b->len;
    while (p < end) {
        char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        *e = 0;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            v = realloc(v, (size_t)cap * sizeof *v);
        }
        v[n++] = p;
        p = e + 1;
    }
    *out = v;
    return n;
}

typedef struct {
    char *text;
    size_t len;
} corpus_str;

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* The corpus: strings as JSON, or as hex when they hold NUL. */
static int load_corpus(corpus_str **out)
{
    dfm_buf b;
    if (dfm_test_load_fixture("tokenizer", "corpus.jsonl", &b)) return -1;
    char **lines;
    int n = lines_of(&b, &lines);
    corpus_str *c = calloc((size_t)n, sizeof *c);
    for (int i = 0; i < n; i++) {
        cJSON *j = cJSON_Parse(lines[i]);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "hex");
        if (cJSON_IsString(t)) {
            c[i].text = strdup(t->valuestring);
            c[i].len = strlen(t->valuestring);
        } else if (cJSON_IsString(h)) {
            size_t hl = strlen(h->valuestring);
            c[i].text = malloc(hl / 2 + 1);
            for (size_t k = 0; k < hl / 2; k++)
                c[i].text[k] = (char)(hexval(h->valuestring[2 * k]) << 4 | hexval(h->valuestring[2 * k + 1]));
            c[i].len = hl / 2;
        } else {
            fprintf(stderr, "  corpus line %d unreadable\n", i + 1);
            dfm_test_failures++;
            c[i].text = strdup("");
        }
        cJSON_Delete(j);
    }
    free(lines);
    dfm_buf_free(&b);
    *out = c;
    return n;
}

static void free_corpus(corpus_str *c, int n)
{
    for (int i = 0; i < n; i++) free(c[i].text);
    free(c);
}

static int same_ids(const int32_t *a, int na, const cJSON *want)
{
    if (!cJSON_IsArray(want) || cJSON_GetArraySize(want) != na) return 0;
    const cJSON *x;
    int i = 0;
    cJSON_ArrayForEach(x, want)
    {
        if (!cJSON_IsNumber(x) || x->valueint != a[i++]) return 0;
    }
    return 1;
}

static void print_mismatch(const char *what, const corpus_str *s, const int32_t *ids, int n, const cJSON *want)
{
    fprintf(stderr, "  %s: text \"", what);
    for (size_t k = 0; k < s->len && k < 200; k++) {
        unsigned char ch = (unsigned char)s->text[k];
        if (ch < 0x20 || ch == '"' || ch == 0x7F) fprintf(stderr, "\\x%02x", ch);
        else fputc(ch, stderr);
    }
    fprintf(stderr, "\"\n    got ");
    for (int k = 0; k < n && k < 40; k++) fprintf(stderr, "%d ", ids[k]);
    char *w = cJSON_PrintUnformatted(want);
    fprintf(stderr, "%s\n    want %.400s\n", n > 40 ? "..." : "", w ? w : "?");
    free(w);
}

/* Every corpus string through one loading path of one model; want_key "ids" or "spm". */
static void check_corpus(const char *model, const char *file, int spm_path)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer/%s%s%s", dfm_test_fixtures(), model, file ? "/" : "",
             file ? file : "");
    dfm_tokenizer *t = NULL;
    double t0 = now_s();
    int rc = dfm_tokenizer_load(&t, path);
    double t1 = now_s();
    if (rc) {
        fprintf(stderr, "  load %s: %s\n", path, dfm_errmsg());
        dfm_test_failures++;
        return;
    }
    corpus_str *c;
    int n = load_corpus(&c);
    dfm_buf b;
    char name[64];
    snprintf(name, sizeof name, "%s/ids.jsonl", model);
    if (n < 0 || dfm_test_load_fixture("tokenizer", name, &b)) {
        dfm_test_failures++;
        dfm_tokenizer_free(t);
        return;
    }
    char **lines;
    int nl = lines_of(&b, &lines);
    CHECK_EQ(nl, n);
    CHECK(n >= 2000);
    int bad = 0, n_ids = 0, n_long = 0;
    double enc = 0;
    for (int i = 0; i < n && i < nl; i++) {
        cJSON *j = cJSON_Parse(lines[i]);
        const cJSON *want = j;
        if (cJSON_IsObject(j)) {
            want = cJSON_GetObjectItemCaseSensitive(j, spm_path ? "spm" : "ids");
        }
        int32_t *ids = NULL;
        int k = 0;
        double e0 = now_s();
        rc = dfm_tokenizer_encode(t, c[i].text, c[i].len, 0, &ids, &k);
        enc += now_s() - e0;
        n_ids += k;
        if (rc || !same_ids(ids, k, want)) {
            if (bad < 5) {
                char what[600];
                snprintf(what, sizeof what, "%s line %d (rc %d %s)", path, i + 1, rc, rc ? dfm_errmsg() : "");
                print_mismatch(what, &c[i], ids, k, want);
            }
            bad++;
        }
        free(ids);
        /* over 512 tokens: the pipeline's truncation (HF: the first 511, then </s>) */
        if (cJSON_GetArraySize(want) > 512) {
            n_long++;
            rc = dfm_tokenizer_encode(t, c[i].text, c[i].len, 512, &ids, &k);
            int ok = rc == 0 && k == 512 && ids[511] == 1;
            const cJSON *x = want ? want->child : NULL;
            for (int q = 0; ok && q < 511 && x; q++, x = x->next) ok = ids[q] == x->valueint;
            if (!ok) {
                fprintf(stderr, "  %s line %d: truncation at 512 is not the first 511 ids + </s>\n", path, i + 1);
                bad++;
            }
            free(ids);
        }
        cJSON_Delete(j);
    }
    CHECK(n_long >= 5);
    if (bad) {
        fprintf(stderr, "  %s: %d of %d strings differ from HF\n", path, bad, n);
        dfm_test_failures++;
    }
    fprintf(stderr, "  %s: %d strings (%d over 512 tokens), %d ids identical to HF; load %.1f ms, encode %.1f ms\n",
            path, n - bad, n_long, n_ids, (t1 - t0) * 1e3, enc * 1e3);
    free(lines);
    dfm_buf_free(&b);
    free_corpus(c, n);
    dfm_tokenizer_free(t);
}

TEST(tokenizer_corpus_nfkc_json) { check_corpus("nfkc", "tokenizer.json", 0); }
TEST(tokenizer_corpus_nfkc_spm) { check_corpus("nfkc", "spiece.model", 1); }
TEST(tokenizer_corpus_rules_json) { check_corpus("rules", "tokenizer.json", 0); }
TEST(tokenizer_corpus_rules_spm) { check_corpus("rules", "spiece.model", 1); }
TEST(tokenizer_corpus_identity_json) { check_corpus("identity", "tokenizer.json", 0); }
TEST(tokenizer_corpus_identity_spm) { check_corpus("identity", "spiece.model", 1); }

/* Hand-written variants (score ties, duplicates, byte fallback, added-token flags, WhitespaceSplit,
 * prepend schemes, Prepend, regex Replace, a prefix template), without and with truncation. */
static void check_variant(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer/variants/%s.json", dfm_test_fixtures(), name);
    dfm_tokenizer *t = NULL;
    if (dfm_tokenizer_load(&t, path)) {
        fprintf(stderr, "  load %s: %s\n", path, dfm_errmsg());
        dfm_test_failures++;
        return;
    }
    dfm_buf tb, ib;
    char ids_name[64];
    snprintf(ids_name, sizeof ids_name, "variants/%s.ids.jsonl", name);
    if (dfm_test_load_fixture("tokenizer", "variants/texts.jsonl", &tb)) {
        dfm_test_failures++;
        dfm_tokenizer_free(t);
        return;
    }
    if (dfm_test_load_fixture("tokenizer", ids_name, &ib)) {
        dfm_test_failures++;
        dfm_buf_free(&tb);
        dfm_tokenizer_free(t);
        return;
    }
    char **tl, **il;
    int nt = lines_of(&tb, &tl), ni = lines_of(&ib, &il), bad = 0;
    CHECK_EQ(nt, ni);
    CHECK(nt >= 150);
    for (int i = 0; i < nt && i < ni; i++) {
        cJSON *tj = cJSON_Parse(tl[i]), *ij = cJSON_Parse(il[i]);
        corpus_str str = {cJSON_IsString(tj) ? tj->valuestring : "", 0};
        str.len = strlen(str.text);
        for (int k = 0; k < 2; k++) {
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(ij, k ? "trunc5" : "ids");
            int32_t *ids = NULL;
            int n = 0;
            int rc = dfm_tokenizer_encode(t, str.text, str.len, k ? 5 : 0, &ids, &n);
            if (rc || !same_ids(ids, n, want)) {
                if (bad++ < 5) {
                    char what[600];
                    snprintf(what, sizeof what, "%s line %d%s (rc %d)", path, i + 1, k ? " max_length 5" : "", rc);
                    print_mismatch(what, &str, ids, n, want);
                }
            }
            free(ids);
        }
        cJSON_Delete(tj);
        cJSON_Delete(ij);
    }
    if (bad) {
        fprintf(stderr, "  %s: %d encodings differ from HF\n", path, bad);
        dfm_test_failures++;
    }
    free(tl);
    free(il);
    dfm_buf_free(&tb);
    dfm_buf_free(&ib);
    dfm_tokenizer_free(t);
}

TEST(tokenizer_variant_ties) { check_variant("ties"); }
TEST(tokenizer_variant_flags) { check_variant("flags"); }
TEST(tokenizer_variant_prepend) { check_variant("prepend"); }
TEST(tokenizer_variant_regex) { check_variant("regex"); }

static dfm_tokenizer *load_model(const char *model, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer/%s/%s", dfm_test_fixtures(), model, file);
    dfm_tokenizer *t = NULL;
    if (dfm_tokenizer_load(&t, path)) {
        fprintf(stderr, "  load %s: %s\n", path, dfm_errmsg());
        dfm_test_failures++;
    }
    return t;
}

TEST(tokenizer_accessors)
{
    for (int f = 0; f < 2; f++) {
        dfm_tokenizer *t = load_model("nfkc", f ? "spiece.model" : "tokenizer.json");
        if (!t) return;
        CHECK_EQ(dfm_tokenizer_vocab_size(t), 2100);
        CHECK_EQ(dfm_tokenizer_eos_id(t), 1);
        CHECK_EQ(dfm_tokenizer_pad_id(t), 0);
        CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_0>"), 2099);
        CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_99>"), 2000);
        CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_100>"), -1);
        CHECK_STR(dfm_tokenizer_piece(t, 1), "</s>");
        CHECK_STR(dfm_tokenizer_piece(t, 2), "<unk>");
        CHECK_STR(dfm_tokenizer_piece(t, 2099), "<extra_id_0>");
        CHECK(dfm_tokenizer_piece(t, 2100) == NULL);
        CHECK(dfm_tokenizer_piece(t, -1) == NULL);
        dfm_tokenizer_free(t);
    }
    dfm_tokenizer *t = load_model("rules", "tokenizer.json");
    if (!t) return;
    CHECK_EQ(dfm_tokenizer_vocab_size(t), 1007);
    CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_0>"), 1006);
    CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_7>"), -1);
    dfm_tokenizer_free(t);
    t = load_model("rules", "spiece.model"); /* extra_ids 7 from tokenizer_config.json */
    if (!t) return;
    CHECK_EQ(dfm_tokenizer_vocab_size(t), 1007);
    CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_0>"), 1006);
    dfm_tokenizer_free(t);
}

static void expect_ids(const dfm_tokenizer *t, const char *text, size_t len, int max_length, const int32_t *want,
                       int nwant)
{
    int32_t *ids = NULL;
    int n = -1;
    int rc = dfm_tokenizer_encode(t, text, len, max_length, &ids, &n);
    int ok = rc == 0 && n == nwant && (!n || !memcmp(ids, want, (size_t)n * sizeof *ids));
    if (!ok) {
        fprintf(stderr, "  encode '%.60s' max_length %d: rc %d n %d (want %d):", text, max_length, rc, n, nwant);
        for (int i = 0; i < n && i < 20; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
        dfm_test_failures++;
    }
    free(ids);
}

TEST(tokenizer_empty_and_truncation)
{
    for (int f = 0; f < 2; f++) {
        dfm_tokenizer *t = load_model("nfkc", f ? "spiece.model" : "tokenizer.json");
        if (!t) return;
        const int32_t eos[1] = {1};
        expect_ids(t, "", 0, 0, eos, 1);
        expect_ids(t, "", 0, 512, eos, 1);
        expect_ids(t, "   ", 3, 512, eos, 1); /* stripped to nothing */
        /* a long text: full ids, then max_length 512, 1, 2, 37 */
        dfm_buf b = {0};
        for (int i = 0; i < 300; i++) dfm_buf_printf(&b, "a photo of a cat number %d, ", i);
        int32_t *full = NULL;
        int n = 0;
        CHECK_EQ(dfm_tokenizer_encode(t, (const char *)b.data, b.len, 0, &full, &n), 0);
        CHECK(n > 1000);
        CHECK_EQ(full[n - 1], 1);
        int lens[] = {512, 1, 2, 37, n, n + 5};
        for (int k = 0; k < 6; k++) {
            int m = lens[k];
            int32_t *want = malloc((size_t)(m + 1) * sizeof *want);
            int nw = m < n ? m : n;
            memcpy(want, full, (size_t)nw * sizeof *want);
            if (m < n) want[m - 1] = 1;
            expect_ids(t, (const char *)b.data, b.len, m, want, nw);
            free(want);
        }
        int32_t *ids = NULL;
        int k = 0;
        CHECK_EQ(dfm_tokenizer_encode(t, "abc", 3, 512, &ids, &k), 0);
        free(ids);
        free(full);
        dfm_buf_free(&b);
        dfm_tokenizer_free(t);
    }
}

TEST(tokenizer_invalid_utf8)
{
    dfm_tokenizer *t = load_model("nfkc", "tokenizer.json");
    if (!t) return;
    const char *bad[] = {"\xff", "a\x80", "\xc0\x80", "\xc3", "\xe4\xb8", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                         "\xf0\x9f\x98", "ok \xe2\x82 no", "\xf8\x88\x80\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t *ids = (int32_t *)1;
        int n = -1;
        int rc = dfm_tokenizer_encode(t, bad[i], strlen(bad[i]), 512, &ids, &n);
        CHECK_EQ(rc, DFM_E_FORMAT);
        CHECK(ids == NULL);
        CHECK_EQ(n, 0);
    }
    int32_t *ids = NULL;
    int n = 0;
    CHECK_EQ(dfm_tokenizer_encode(t, "a\0b", 3, 0, &ids, &n), 0); /* NUL is valid */
    free(ids);
    CHECK_EQ(dfm_tokenizer_encode(t, "abc", 3, 0, &ids, &n), 0);
    free(ids);
    dfm_tokenizer_free(t);
}

TEST(tokenizer_graphemes)
{
    dfm_buf b;
    if (dfm_test_load_fixture("tokenizer", "graphemes.jsonl", &b)) {
        dfm_test_failures++;
        return;
    }
    char **lines;
    int n = lines_of(&b, &lines), bad = 0;
    CHECK(n >= 1000);
    for (int i = 0; i < n; i++) {
        cJSON *j = cJSON_Parse(lines[i]);
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(j, "text");
        const cJSON *bs = cJSON_GetObjectItemCaseSensitive(j, "b"), *x;
        if (!cJSON_IsString(tx) || !cJSON_IsArray(bs)) {
            bad++;
            cJSON_Delete(j);
            continue;
        }
        const char *s = tx->valuestring;
        size_t len = strlen(s), pos = 0;
        int ok = 1;
        cJSON_ArrayForEach(x, bs)
        {
            pos += dfm_grapheme_len(s + pos, len - pos);
            if ((int)pos != x->valueint) ok = 0;
        }
        if (ok && pos < len && pos + dfm_grapheme_len(s + pos, len - pos) != len) ok = 0;
        if (!ok) {
            if (bad < 5) {
                fprintf(stderr, "  graphemes line %d:", i + 1);
                for (size_t k = 0; k < len; k++) fprintf(stderr, " %02x", (unsigned char)s[k]);
                fprintf(stderr, "\n");
            }
            bad++;
        }
        cJSON_Delete(j);
    }
    if (bad) {
        fprintf(stderr, "  %d of %d grapheme strings differ from unicode-segmentation\n", bad, n);
        dfm_test_failures++;
    }
    free(lines);
    dfm_buf_free(&b);
}

/* ---------------------------------------------------------------------------------------------
 * Corrupt and unsupported files */

static void write_file(const char *path, const void *data, size_t n)
{
    if (dfm_write_file_atomic(path, data, n)) {
        fprintf(stderr, "  cannot write %s: %s\n", path, dfm_errmsg());
        dfm_test_failures++;
    }
}

/* Load must fail with `want` (0: any outcome); when it succeeds, encoding must not crash. */
static void try_load(const char *path, int want, const char *why)
{
    dfm_tokenizer *t = NULL;
    int rc = dfm_tokenizer_load(&t, path);
    if (want && rc != want) {
        fprintf(stderr, "  %s: rc %d (want %d) %s\n", why, rc, want, rc ? dfm_errmsg() : "");
        dfm_test_failures++;
    }
    if (rc == 0) {
        CHECK(t != NULL);
        const char *texts[] = {"a photo of a cat", "  Ｆｕｌｌ ｗｉｄｔｈ ﬁ e\u0301 </s> <extra_id_0>", "", "中文 😀👍🏽"};
        for (int i = 0; i < 4; i++) {
            int32_t *ids = NULL;
            int n = 0;
            if (dfm_tokenizer_encode(t, texts[i], strlen(texts[i]), 64, &ids, &n) == 0)
                for (int k = 0; k < n; k++) CHECK(ids[k] >= 0 && ids[k] < dfm_tokenizer_vocab_size(t));
            free(ids);
        }
        dfm_tokenizer_free(t);
    } else {
        CHECK(t == NULL);
        CHECK(dfm_errmsg()[0] != 0);
    }
}

TEST(tokenizer_corrupt_spm)
{
    dfm_buf b;
    if (dfm_test_load_fixture("tokenizer", "rules/spiece.model", &b)) {
        dfm_test_failures++;
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/corrupt.model", dfm_test_tmpdir());
    /* truncations: every prefix length up to 64, then a spread */
    for (size_t n = 0; n < b.len; n += n < 64 ? 1 : 97) {
        write_file(path, b.data, n);
        try_load(path, 0, "truncated spiece.model");
    }
    /* byte flips (deterministic), the file must load or fail cleanly */
    uint8_t *copy = malloc(b.len);
    uint32_t seed = 12345;
    for (int k = 0; k < 300; k++) {
        memcpy(copy, b.data, b.len);
        for (int f = 0; f < 1 + k % 4; f++) {
            seed = seed * 1664525u + 1013904223u;
            copy[(seed >> 8) % b.len] ^= (uint8_t)(1u << (seed >> 28) % 8);
        }
        write_file(path, copy, b.len);
        try_load(path, 0, "flipped spiece.model");
    }
    free(copy);
    /* not a protobuf at all / BPE model_type */
    write_file(path, "\x0a\xff\xff\xff\xff\x0f", 6);
    try_load(path, DFM_E_FORMAT, "length past the end");
    write_file(path, "\x12\x02\x18\x02\x0a\x03\x0a\x01\x61", 9); /* trainer_spec.model_type = 2 */
    try_load(path, DFM_E_UNSUPPORTED, "BPE spiece.model");
    write_file(path, "\x0b", 1); /* wire type 3 (group) */
    try_load(path, DFM_E_FORMAT, "group wire type");
    dfm_buf_free(&b);
}

static char *fixture_json(const char *model)
{
    dfm_buf b;
    char name[64];
    snprintf(name, sizeof name, "%s/tokenizer.json", model);
    if (dfm_test_load_fixture("tokenizer", name, &b)) return NULL;
    dfm_buf_append(&b, "", 1);
    return (char *)dfm_buf_take(&b, NULL);
}

/* Replace the first occurrence of `from` in s by `to` (malloc'd result). */
static char *replaced(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    if (!p) {
        fprintf(stderr, "  '%s' not in the fixture json\n", from);
        dfm_test_failures++;
        return strdup(s);
    }
    size_t a = (size_t)(p - s), fl = strlen(from), tl = strlen(to), n = strlen(s);
    char *o = malloc(n - fl + tl + 1);
    memcpy(o, s, a);
    memcpy(o + a, to, tl);
    memcpy(o + a + tl, p + fl, n - a - fl + 1);
    return o;
}

TEST(tokenizer_corrupt_json)
{
    char *js = fixture_json("nfkc");
    if (!js) {
        dfm_test_failures++;
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/corrupt-tokenizer.json", dfm_test_tmpdir());
    size_t n = strlen(js);
    /* truncations */
    for (size_t k = 1; k < n; k += n / 97 + 1) {
        write_file(path, js, k);
        try_load(path, 0, "truncated tokenizer.json");
    }
    struct {
        const char *from, *to;
        int want;
    } edits[] = {
        {"\"type\":\"Unigram\"", "\"type\":\"BPE\"", DFM_E_UNSUPPORTED},
        {"\"type\":\"Precompiled\"", "\"type\":\"NFKC\"", DFM_E_UNSUPPORTED},
        {"\"type\":\"Metaspace\"", "\"type\":\"ByteLevel\"", DFM_E_UNSUPPORTED},
        {"\"type\":\"TemplateProcessing\"", "\"type\":\"RobertaProcessing\"", DFM_E_UNSUPPORTED},
        {"{\"Regex\":\" {2,}\"}", "{\"Regex\":\"\\\\s+\"}", DFM_E_UNSUPPORTED},
        {"{\"Regex\":\" {2,}\"}", "{\"Regex\":\" {2,\"}", DFM_E_UNSUPPORTED},
        {"\"unk_id\":2", "\"unk_id\":99999", DFM_E_FORMAT},
        {"\"unk_id\":2", "\"unk_id\":-1", DFM_E_FORMAT},
        {"\"unk_id\":2", "\"unk_id\":\"2\"", DFM_E_FORMAT},
        {"\"vocab\":[[", "\"vocab\":[[1,", DFM_E_FORMAT},
        {"\"vocab\":[[\"<pad>\",0.0]", "\"vocab\":[[\"<pad>\"]", DFM_E_FORMAT},
        {"\"vocab\":[", "\"vocab\":{}, \"x\":[", DFM_E_FORMAT},
        {"\"precompiled_charsmap\":\"", "\"precompiled_charsmap\":\"!", DFM_E_FORMAT},
        {"\"precompiled_charsmap\":\"", "\"precompiled_charsmap\":\"AAAA\", \"x\":\"", DFM_E_FORMAT},
        {"\"precompiled_charsmap\":\"", "\"precompiled_charsmap\":\"/////w==\", \"x\":\"", DFM_E_FORMAT},
        {"\"version\":\"1.0\"", "\"version\":\"2.0\"", DFM_E_UNSUPPORTED},
        {"\"replacement\":\"\xe2\x96\x81\"", "\"replacement\":\"ab\"", DFM_E_FORMAT},
        {"\"prepend_scheme\":\"always\"", "\"prepend_scheme\":\"sometimes\"", DFM_E_FORMAT},
        {"\"ids\":[1]", "\"ids\":[-1]", DFM_E_FORMAT},
        {"\"content\":\"</s>\"", "\"content\":5", DFM_E_FORMAT},
        {"\"added_tokens\":[", "\"added_tokens\":[7,", DFM_E_FORMAT},
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        char *e = replaced(js, edits[k].from, edits[k].to);
        write_file(path, e, strlen(e));
        char why[200];
        snprintf(why, sizeof why, "edit %s -> %s", edits[k].from, edits[k].to);
        try_load(path, edits[k].want, why);
        free(e);
    }
    /* a charsmap of random units: loads (the trie is not checked up front), normalizes safely */
    uint32_t seed = 777;
    for (int k = 0; k < 20; k++) {
        size_t units = 64 + k * 50, raw_len = 4 + units * 4 + 40;
        uint8_t *raw = malloc(raw_len);
        for (size_t i = 0; i < raw_len; i++) {
            seed = seed * 1664525u + 1013904223u;
            raw[i] = (uint8_t)(seed >> 24);
        }
        raw[0] = (uint8_t)(units * 4), raw[1] = (uint8_t)(units * 4 >> 8), raw[2] = raw[3] = 0;
        for (size_t i = 4 + units * 4; i < raw_len; i++) raw[i] = (uint8_t)('a' + raw[i] % 26) * (i % 5 != 0);
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char *b64 = malloc(raw_len / 3 * 4 + 8), *o = b64;
        size_t i = 0;
        for (; i + 3 <= raw_len; i += 3) {
            uint32_t w = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
            *o++ = tbl[w >> 18], *o++ = tbl[(w >> 12) & 63], *o++ = tbl[(w >> 6) & 63], *o++ = tbl[w & 63];
        }
        if (raw_len - i == 1) {
            uint32_t w = (uint32_t)raw[i] << 16;
            *o++ = tbl[w >> 18], *o++ = tbl[(w >> 12) & 63], *o++ = '=', *o++ = '=';
        } else if (raw_len - i == 2) {
            uint32_t w = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8;
            *o++ = tbl[w >> 18], *o++ = tbl[(w >> 12) & 63], *o++ = tbl[(w >> 6) & 63], *o++ = '=';
        }
        *o = 0;
        const char *key = "\"precompiled_charsmap\":\"";
        char *p = strstr(js, key);
        if (!p) break;
        char *q = strchr(p + strlen(key), '"');
        dfm_buf e = {0};
        dfm_buf_append(&e, js, (size_t)(p - js) + strlen(key));
        dfm_buf_append(&e, b64, strlen(b64));
        dfm_buf_append(&e, q, strlen(q));
        write_file(path, e.data, e.len);
        try_load(path, 0, "random charsmap");
        dfm_buf_free(&e);
        free(b64);
        free(raw);
    }
    write_file(path, "{", 1);
    try_load(path, DFM_E_FORMAT, "not JSON");
    write_file(path, "[]", 2);
    try_load(path, DFM_E_FORMAT, "a JSON list");
    write_file(path, "{\"model\":{\"type\":\"Unigram\",\"vocab\":[],\"unk_id\":0}}", 47);
    try_load(path, DFM_E_FORMAT, "empty vocab with unk_id");
    free(js);
    dfm_tokenizer *t = NULL;
    CHECK_EQ(dfm_tokenizer_load(&t, "/nonexistent/tokenizer"), DFM_E_IO);
    CHECK(t == NULL);
    CHECK(strstr(dfm_errmsg(), "/nonexistent/tokenizer") != NULL);
}

/* try_load with want 0: any outcome but a crash. */

TEST(tokenizer_diffusers_root)
{
    char root[512], p[700];
    snprintf(root, sizeof root, "%s/wan-root", dfm_test_tmpdir());
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/model_index.json", root);
    const char *mi = "{\"_class_name\": \"WanPipeline\", \"tokenizer\": [\"transformers\", \"T5TokenizerFast\"]}";
    write_file(p, mi, strlen(mi));
    snprintf(p, sizeof p, "%s/tokenizer", root);
    mkdir(p, 0755);
    const char *files[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        dfm_buf b;
        char name[64];
        snprintf(name, sizeof name, "nfkc/%s", files[i]);
        if (dfm_test_load_fixture("tokenizer", name, &b)) {
            dfm_test_failures++;
            return;
        }
        snprintf(p, sizeof p, "%s/tokenizer/%s", root, files[i]);
        write_file(p, b.data, b.len);
        dfm_buf_free(&b);
    }
    dfm_tokenizer *t = NULL;
    int rc = dfm_tokenizer_load(&t, root);
    if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
    CHECK_EQ(rc, 0);
    if (t) CHECK_EQ(dfm_tokenizer_vocab_size(t), 2100);
    dfm_tokenizer_free(t);
    /* a tokenizer directory with only spiece.model + config */
    snprintf(p, sizeof p, "%s/spm-only", dfm_test_tmpdir());
    mkdir(p, 0755);
    dfm_buf b;
    if (dfm_test_load_fixture("tokenizer", "rules/spiece.model", &b) == 0) {
        char f[800];
        snprintf(f, sizeof f, "%s/spiece.model", p);
        write_file(f, b.data, b.len);
        dfm_buf_free(&b);
        t = NULL;
        CHECK_EQ(dfm_tokenizer_load(&t, p), 0);
        if (t) CHECK_EQ(dfm_tokenizer_vocab_size(t), 1100); /* no config: 100 sentinels */
        dfm_tokenizer_free(t);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Load time of a UMT5-sized vocabulary: 256,000 pieces + 300 sentinels, the nfkc charsmap. */

TEST(tokenizer_large_vocab_load_time)
{
    char *js = fixture_json("nfkc");
    if (!js) {
        dfm_test_failures++;
        return;
    }
    const char *key = "\"precompiled_charsmap\":\"";
    char *p = strstr(js, key);
    char *q = p ? strchr(p + strlen(key), '"') : NULL;
    if (!q) {
        dfm_test_failures++;
        free(js);
        return;
    }
    dfm_buf b = {0};
    dfm_buf_printf(&b, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[");
    const char *sp[3] = {"<pad>", "</s>", "<unk>"};
    for (int i = 0; i < 3; i++)
        dfm_buf_printf(&b, "{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                           "\"normalized\":false,\"special\":true},", i, sp[i]);
    for (int i = 0; i < 300; i++)
        dfm_buf_printf(&b, "{\"id\":%d,\"content\":\"<extra_id_%d>\",\"single_word\":false,\"lstrip\":false,"
                           "\"rstrip\":false,\"normalized\":false,\"special\":true}%s", 256299 - i, i, i < 299 ? "," : "");
    dfm_buf_printf(&b, "],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Precompiled\",%.*s\"},"
                       "{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true},{\"type\":\"Replace\",\"pattern\":"
                       "{\"Regex\":\" {2,}\"},\"content\":\"\xe2\x96\x81\"}]},\"pre_tokenizer\":{\"type\":\"Metaspace\","
                       "\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true},\"post_processor\":"
                       "{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
                       "{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"special_tokens\":{\"</s>\":{\"id\":\"</s>\","
                       "\"ids\":[1],\"tokens\":[\"</s>\"]}}},\"decoder\":null,\"model\":{\"type\":\"Unigram\",\"unk_id\":2,"
                       "\"vocab\":[[\"<pad>\",0.0],[\"</s>\",0.0],[\"<unk>\",0.0]",
                   (int)(q - p), p);
    /* pieces: "▁" + letters, CJK, Cyrillic; deterministic, unique by construction (base-k digits) */
    static const char *alpha[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "k", "l", "m", "n", "o", "p", "r",
                                  "s", "t", "u", "v", "\xc3\xa9", "\xc3\xa4", "\xd0\xb0", "\xd0\xbe", "\xe4\xb8\xad",
                                  "\xe6\x96\x87", "\xe7\x8c\xab", "\xe3\x81\x82"};
    const int na = (int)(sizeof alpha / sizeof alpha[0]);
    for (int i = 3; i < 256000; i++) {
        dfm_buf_printf(&b, ",[\"%s", i % 2 ? "\xe2\x96\x81" : "");
        for (int v = i; v > 0; v /= na) dfm_buf_printf(&b, "%s", alpha[v % na]);
        dfm_buf_printf(&b, "\",%.8f]", -1.0 - (double)(i % 9973) * 0.0013);
    }
    for (int i = 299; i >= 0; i--) dfm_buf_printf(&b, ",[\"<extra_id_%d>\",0.0]", i);
    dfm_buf_printf(&b, "],\"byte_fallback\":false}}");
    char path[600];
    snprintf(path, sizeof path, "%s/big-tokenizer.json", dfm_test_tmpdir());
    write_file(path, b.data, b.len);
    double t0 = now_s();
    dfm_tokenizer *t = NULL;
    int rc = dfm_tokenizer_load(&t, path);
    double t1 = now_s();
    if (rc) fprintf(stderr, "  %s\n", dfm_errmsg());
    CHECK_EQ(rc, 0);
    fprintf(stderr, "  256,300-piece tokenizer.json (%.1f MB): loaded in %.0f ms\n", b.len / 1e6, (t1 - t0) * 1e3);
    if (t) {
        CHECK_EQ(dfm_tokenizer_vocab_size(t), 256300);
        CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_0>"), 256299);
        CHECK_EQ(dfm_tokenizer_token_id(t, "<extra_id_299>"), 256000);
        /* "▁" + digits of 5 in base na is piece 5 ("f"); 5 is odd so it has the ▁ prefix */
        int32_t want[] = {5, 256299, 1};
        expect_ids(t, "f<extra_id_0>", 13, 512, want, 3);
        dfm_buf text = {0};
        for (int i = 0; i < 2000; i++) dfm_buf_printf(&text, "%s ", i % 3 ? "abc" : "\xe4\xb8\xad\xe6\x96\x87");
        int32_t *ids = NULL;
        int n = 0;
        double e0 = now_s();
        CHECK_EQ(dfm_tokenizer_encode(t, (const char *)text.data, text.len, 0, &ids, &n), 0);
        fprintf(stderr, "  encoded %zu bytes into %d ids in %.2f ms\n", text.len, n, (now_s() - e0) * 1e3);
        free(ids);
        dfm_buf_free(&text);
    }
    dfm_tokenizer_free(t);
    dfm_buf_free(&b);
    free(js);
}
