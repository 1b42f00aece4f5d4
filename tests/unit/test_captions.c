/* test_captions.c — caption sources: each source alone, the priority order, malformed and
 * oversized files, multi-caption captions.json, NeMo's internvl prefix rule, the JSONL
 * manifest, the per-directory cache and the text cleaning, and NeMo's Wan cleaning
 * (--clean-captions) against Python 3.11's html.unescape twice + strip + re.sub(r"\s+", " ")
 * + strip (the expected strings printed by Python from the inputs below). */
#include "test.h"
#include "base/error.h"
#include "data/captions.h"
#include "text/prompt_clean.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void put(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        return;
    }
    fputs(text, f);
    fclose(f);
}

static void mkdirs(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/caps", dfm_test_tmpdir());
    mkdir(out, 0755);
    snprintf(out, n, "%s/caps/%s", dfm_test_tmpdir(), name);
    mkdir(out, 0755);
}

/* Find the captions of dir/name; returns the source ("" on error) and fills caps. */
static const char *find(dfm_captioner *c, const char *dir, const char *name, dfm_captions *caps)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int rc = dfm_captions_find(c, p, caps);
    CHECK_EQ(rc, 0);
    if (rc) return "";
    CHECK(caps->n >= 1 && caps->text && caps->source);
    return caps->source;
}

/* Check source and the single caption of dir/name. */
static void expect1(dfm_captioner *c, const char *dir, const char *name, const char *source,
                    const char *text)
{
    dfm_captions caps;
    const char *src = find(c, dir, name, &caps);
    if (strcmp(src, source)) fprintf(stderr, "  %s: source '%s', want '%s'\n", name, src, source);
    CHECK_STR(src, source);
    CHECK_EQ(caps.n, 1);
    if (caps.n >= 1) CHECK_STR(caps.text[0], text);
    dfm_captions_free(&caps);
}

TEST(captions_clean)
{
    char a[] = "  a \t\n b\r\v\f c  ";
    dfm_caption_clean(a);
    CHECK_STR(a, "a b c");
    char b[] = " \n\t ";
    dfm_caption_clean(b);
    CHECK_STR(b, "");
    char c[] = "";
    dfm_caption_clean(c);
    CHECK_STR(c, "");
    char d[] = "one";
    dfm_caption_clean(d);
    CHECK_STR(d, "one");
    char e[] = "x\r\ny";
    dfm_caption_clean(e);
    CHECK_STR(e, "x y");
    dfm_caption_clean(NULL);
}

TEST(captions_each_source_and_priority)
{
    char dir[512];
    mkdirs(dir, sizeof dir, "prio");
    /* a: txt beats json, meta.json, captions.json */
    put(dir, "a.png", "x");
    put(dir, "a.txt", "  hello\n\t world  \n");
    put(dir, "a.json", "{\"caption\": \"from json\"}");
    /* b: json (no txt); b2: empty txt falls through to json */
    put(dir, "b.png", "x");
    put(dir, "b.json", "{\"caption\": \"json  b\", \"other\": 1}");
    put(dir, "b2.png", "x");
    put(dir, "b2.txt", "  \n\t ");
    put(dir, "b2.json", "{\"caption\": \"json b2\"}");
    /* c: meta.json beats captions.json; d: captions.json (multi); e: non-list -> filename */
    put(dir, "meta.json",
         "[{\"file_name\": \"c.png\", \"caption\": \"meta c\"},"
         " {\"filename\": \"c2.png\", \"caption\": \"meta c2\"},"
         " {\"file_name\": \"b.png\", \"caption\": \"meta b\"},"
         " {\"file_name\": \"g.png\", \"caption\": \"   \"},"
         " {\"file_name\": \"h.png\", \"caption\": 7},"
         " 42, {\"caption\": \"no name\"}]");
    put(dir, "captions.json",
         "{\"c.png\": [\"caps c\"], \"d.png\": [\"one\", \"  two  \", \"\", 5, \"three\\nlines\"],"
         " \"e.png\": \"not a list\", \"g.png\": [\"caps g\"], \"h.png\": [], "
         " \"tuxemon_sample_0001.png\": [\"caps tux\"]}");
    put(dir, "tuxemon_internvl.json",
         "{\"file_name\": \"tuxemon_sample_0001.png\", \"internvl\": \"ivl 1\"}\n"
         "{\"file_name\": \"tuxemon_sample_0002.png\", \"internvl\": \"ivl 2\"}\n");
    put(dir, "my_cat__photo.jpg", "x");

    dfm_captioner *c = NULL;
    CHECK_EQ(dfm_captioner_new(&c, NULL), 0);
    if (!c) return;
    expect1(c, dir, "a.png", "txt", "hello world");
    expect1(c, dir, "b.png", "json", "json b");
    expect1(c, dir, "b2.png", "json", "json b2");
    expect1(c, dir, "c.png", "meta.json", "meta c");
    expect1(c, dir, "c2.png", "meta.json", "meta c2"); /* "filename" when no "file_name" */
    dfm_captions caps;
    CHECK_STR(find(c, dir, "d.png", &caps), "captions.json");
    CHECK_EQ(caps.n, 3);
    if (caps.n == 3) {
        CHECK_STR(caps.text[0], "one");
        CHECK_STR(caps.text[1], "two");
        CHECK_STR(caps.text[2], "three lines");
    }
    dfm_captions_free(&caps);
    CHECK(caps.text == NULL && caps.n == 0);
    expect1(c, dir, "e.png", "filename", "e");
    expect1(c, dir, "g.png", "captions.json", "caps g"); /* blank meta caption falls through */
    expect1(c, dir, "h.png", "filename", "h");           /* non-string meta, empty list */
    /* captions.json beats internvl; internvl serves the rest of the group */
    expect1(c, dir, "tuxemon_sample_0001.png", "captions.json", "caps tux");
    expect1(c, dir, "tuxemon_sample_0002.png", "internvl", "ivl 2");
    expect1(c, dir, "tuxemon_sample_0003.png", "filename", "tuxemon sample 0003");
    expect1(c, dir, "my_cat__photo.jpg", "filename", "my cat photo");
    expect1(c, dir, "no_such_file.mp4", "filename", "no such file");
    expect1(c, dir, "_.png", "filename", ""); /* still one caption */
    /* A path without a directory part resolves against ".". */
    dfm_captions rel;
    CHECK_EQ(dfm_captions_find(c, "dfm_test_nowhere_x.png", &rel), 0);
    CHECK_STR(rel.source, "filename");
    CHECK_STR(rel.text[0], "dfm test nowhere x");
    dfm_captions_free(&rel);
    dfm_captioner_free(c);
}

TEST(captions_field_and_meta_shapes)
{
    char d1[512], d2[512], d3[512];
    mkdirs(d1, sizeof d1, "items");
    mkdirs(d2, sizeof d2, "data");
    mkdirs(d3, sizeof d3, "objnone");
    put(d1, "meta.json",
         "{\"items\": [{\"file_name\": \"v.mp4\", \"width\": 1280, \"vila_caption\": \"vila v\","
         " \"caption\": \"plain v\"}, {\"file_name\": \"w.mp4\", \"caption\": \"plain w\"},"
         " {\"file_name\": \"dup.mp4\", \"vila_caption\": \"first\"},"
         " {\"file_name\": \"dup.mp4\", \"vila_caption\": \"last\"}]}");
    put(d1, "s.json", "{\"vila_caption\": \"side s\", \"caption\": \"plain s\"}");
    put(d2, "meta.json", "{\"data\": [{\"file_name\": \"v.mp4\", \"caption\": \"data v\"}]}");
    put(d3, "meta.json", "{\"v.mp4\": \"neither items nor data\"}");

    dfm_caption_opts o = {.manifest = NULL, .field = "vila_caption"};
    dfm_captioner *c = NULL;
    CHECK_EQ(dfm_captioner_new(&c, &o), 0);
    if (!c) return;
    expect1(c, d1, "v.mp4", "meta.json", "vila v");
    expect1(c, d1, "w.mp4", "filename", "w"); /* no vila_caption */
    expect1(c, d1, "dup.mp4", "meta.json", "last"); /* the last item wins, as in a dict */
    expect1(c, d1, "s.mp4", "json", "side s");
    expect1(c, d2, "v.mp4", "filename", "v");
    dfm_captioner_free(c);

    CHECK_EQ(dfm_captioner_new(&c, NULL), 0); /* default field "caption" */
    if (!c) return;
    expect1(c, d1, "v.mp4", "meta.json", "plain v");
    expect1(c, d1, "w.mp4", "meta.json", "plain w");
    expect1(c, d1, "s.mp4", "json", "plain s");
    expect1(c, d2, "v.mp4", "meta.json", "data v");
    expect1(c, d3, "v.mp4", "filename", "v");
    dfm_captioner_free(c);
}

TEST(captions_malformed_and_limits)
{
    char dir[512];
    mkdirs(dir, sizeof dir, "bad");
    put(dir, "meta.json", "[{\"file_name\": \"x.png\", \"caption\": \"trunc");
    put(dir, "captions.json", "{\"x.png\": [\"unterminated\"");
    put(dir, "x_internvl.json", "not json at all\n{\"file_name\": 3}\n[1,2]\n");
    put(dir, "j.json", "{not json");
    put(dir, "k.json", "{\"caption\": 5}");
    put(dir, "l.json", "[\"caption\"]");
    put(dir, "m.txt", "");
    char ndir[1024];
    snprintf(ndir, sizeof ndir, "%s/n.txt", dir);
    mkdir(ndir, 0755); /* a directory, not a file */
    /* A sidecar over 1 MiB is ignored. */
    size_t big = (1u << 20) + 16;
    char *s = malloc(big + 1);
    if (s) {
        memset(s, 'a', big);
        s[big] = 0;
        put(dir, "big.txt", s);
        free(s);
    }
    put(dir, "big.json", "{\"caption\": \"small json\"}");
    /* A binary sidecar with a NUL: the caption ends there. */
    char p[1024];
    snprintf(p, sizeof p, "%s/nul.txt", dir);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite("bin\0ary", 1, 7, f);
        fclose(f);
    }

    dfm_captioner *c = NULL;
    CHECK_EQ(dfm_captioner_new(&c, NULL), 0);
    if (!c) return;
    expect1(c, dir, "x.png", "filename", "x");
    expect1(c, dir, "j.png", "filename", "j");
    expect1(c, dir, "k.png", "filename", "k");
    expect1(c, dir, "l.png", "filename", "l");
    expect1(c, dir, "m.png", "filename", "m");
    expect1(c, dir, "n.png", "filename", "n");
    expect1(c, dir, "big.png", "json", "small json");
    expect1(c, dir, "nul.png", "txt", "bin");
    dfm_captioner_free(c);
}

TEST(captions_internvl_prefix_and_fields)
{
    char dir[512];
    mkdirs(dir, sizeof dir, "ivl");
    put(dir, "tuxemon_internvl.json",
         "{\"file_name\": \"tuxemon_sample_0001.png\", \"internvl\": \"a  tux\", \"usr\": \"u1\"}\n"
         "\n"
         "{broken line\n"
         "{\"file_name\": \"tuxemon_sample_0002.png\", \"usr\": \"u2\"}\n"
         "{\"file_name\": \"tuxemon_sample_0003.png\", \"caption\": \"c3\"}\n"
         "{\"file_name\": \"tuxemon_sample_0004.png\", \"internvl\": \"\", \"usr\": \"u4\"}\n"
         "{\"file_name\": \"other.png\", \"internvl\": \"not in this group\"}\n"
         "{\"file_name\": \"tuxemon_sample_0005.png\", \"internvl\": \"no newline at end\"}");
    put(dir, "hf_internvl.json", "{\"file_name\": \"hf_sample_00000001.jpg\", \"internvl\": \"hf 1\"}\n");
    /* Without "_sample" the prefix is the stem; with two, the last one splits. */
    put(dir, "plain_internvl.json", "{\"file_name\": \"plain.png\", \"usr\": \"plain usr\"}\n");
    put(dir, "a_sample_b_internvl.json",
         "{\"file_name\": \"a_sample_b_sample_3.png\", \"internvl\": \"last split\"}\n");
    /* A JSON array in the .json file is read too. */
    put(dir, "arr_internvl.json", "[{\"file_name\": \"arr_sample_1.png\", \"internvl\": \"arr 1\"}]");

    dfm_captioner *c = NULL;
    CHECK_EQ(dfm_captioner_new(&c, NULL), 0);
    if (!c) return;
    expect1(c, dir, "tuxemon_sample_0001.png", "internvl", "a tux"); /* internvl before usr */
    expect1(c, dir, "tuxemon_sample_0002.png", "internvl", "u2");
    expect1(c, dir, "tuxemon_sample_0003.png", "internvl", "c3");
    expect1(c, dir, "tuxemon_sample_0004.png", "internvl", "u4"); /* empty internvl -> usr */
    expect1(c, dir, "tuxemon_sample_0005.png", "internvl", "no newline at end");
    expect1(c, dir, "tuxemon_sample_0006.png", "filename", "tuxemon sample 0006");
    expect1(c, dir, "other.png", "filename", "other"); /* other_internvl.json does not exist */
    expect1(c, dir, "hf_sample_00000001.jpg", "internvl", "hf 1");
    expect1(c, dir, "plain.png", "internvl", "plain usr");
    expect1(c, dir, "a_sample_b_sample_3.png", "internvl", "last split");
    expect1(c, dir, "arr_sample_1.png", "internvl", "arr 1");
    dfm_captioner_free(c);

    /* A given field comes first. */
    dfm_caption_opts o = {.field = "usr"};
    CHECK_EQ(dfm_captioner_new(&c, &o), 0);
    if (!c) return;
    expect1(c, dir, "tuxemon_sample_0001.png", "internvl", "u1");
    expect1(c, dir, "tuxemon_sample_0003.png", "internvl", "c3");
    dfm_captioner_free(c);
}

TEST(captions_manifest)
{
    char dir[512], sub[600], other[600];
    mkdirs(dir, sizeof dir, "mf");
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    mkdir(sub, 0755);
    mkdir(other, 0755);
    put(dir, "manifest.jsonl",
         "{\"file_name\": \"sub/x.png\", \"caption\": \"manifest x (first)\"}\n"
         "{\"filename\": \"y.png\", \"text\": \"manifest  y\"}\n"
         "this is not json\n"
         "[1, 2, 3]\n"
         "\n"
         "{\"path\": \"./sub/z.png\", \"usr\": \"usr z\"}\n"
         "{\"file_name\": \"sub/e.png\", \"caption\": \"  \"}\n"
         "{\"file_name\": \"sub/x.png\", \"caption\": \"manifest x\"}\n"
         "{\"file_name\": \"sub/f.png\", \"custom\": \"custom f\", \"caption\": \"cap f\"}\n"
         "{\"no_name\": true, \"caption\": \"orphan\"}\n");
    put(sub, "x.txt", "sidecar x");
    put(sub, "e.txt", "sidecar e");
    put(sub, "w.txt", "sidecar w");
    char mpath[700];
    snprintf(mpath, sizeof mpath, "%s/manifest.jsonl", dir);

    dfm_caption_opts o = {.manifest = mpath};
    dfm_captioner *c = NULL;
    CHECK_EQ(dfm_captioner_new(&c, &o), 0);
    if (!c) return;
    expect1(c, sub, "x.png", "manifest", "manifest x"); /* beats the sidecar; last line wins */
    expect1(c, other, "y.png", "manifest", "manifest y"); /* matched by basename */
    expect1(c, sub, "z.png", "manifest", "usr z");        /* "./" normalized */
    expect1(c, sub, "e.png", "txt", "sidecar e");         /* empty caption falls through */
    expect1(c, sub, "w.png", "txt", "sidecar w");         /* not in the manifest */
    expect1(c, sub, "f.png", "manifest", "cap f");
    expect1(c, dir, "x.png", "filename", "x");            /* sub/x.png is not x.png */
    /* A path with "." and ".." still matches lexically. */
    char p[800];
    snprintf(p, sizeof p, "%s/./other/../sub/x.png", dir);
    dfm_captions caps;
    CHECK_EQ(dfm_captions_find(c, p, &caps), 0);
    CHECK_STR(caps.source, "manifest");
    CHECK_STR(caps.text[0], "manifest x");
    dfm_captions_free(&caps);
    /* A relative path to the same file. */
    char cwd[1024];
    if (getcwd(cwd, sizeof cwd) && chdir(dir) == 0) {
        CHECK_EQ(dfm_captions_find(c, "sub/x.png", &caps), 0);
        CHECK_STR(caps.source, "manifest");
        dfm_captions_free(&caps);
        CHECK_EQ(dfm_captions_find(c, "x.png", &caps), 0); /* ./x.png: not in the manifest */
        CHECK_STR(caps.source, "filename");
        dfm_captions_free(&caps);
        if (chdir(cwd) != 0) CHECK(0);
    }
    dfm_captioner_free(c);

    /* The given field comes first in the manifest. */
    dfm_caption_opts o2 = {.manifest = mpath, .field = "custom"};
    CHECK_EQ(dfm_captioner_new(&c, &o2), 0);
    if (!c) return;
    expect1(c, sub, "f.png", "manifest", "custom f");
    expect1(c, sub, "x.png", "manifest", "manifest x"); /* then "caption" */
    dfm_captioner_free(c);

    /* A missing manifest is an error at creation. */
    char missing[800];
    snprintf(missing, sizeof missing, "%s/nope.jsonl", dir);
    dfm_caption_opts o3 = {.manifest = missing};
    c = (dfm_captioner *)1;
    CHECK_EQ(dfm_captioner_new(&c, &o3), DFM_E_IO);
    CHECK(c == NULL);
}

/* Directory files are parsed once and cached for the last few directories: an edit to a cached
 * meta.json is not seen until the directory has been evicted. */
TEST(captions_dir_cache)
{
    char dirs[12][512];
    for (int i = 0; i < 12; i++) {
        char name[32];
        snprintf(name, sizeof name, "cache%02d", i);
        mkdirs(dirs[i], sizeof dirs[i], name);
        char meta[128];
        snprintf(meta, sizeof meta, "[{\"file_name\": \"f.png\", \"caption\": \"dir %d v1\"}]", i);
        put(dirs[i], "meta.json", meta);
    }
    dfm_captioner *c = NULL;
    CHECK_EQ(dfm_captioner_new(&c, NULL), 0);
    if (!c) return;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 12; i++) {
            char want[32];
            snprintf(want, sizeof want, "dir %d v1", i);
            expect1(c, dirs[i], "f.png", "meta.json", want);
        }
    }
    /* dirs[11] is cached: an edit is not seen. */
    put(dirs[11], "meta.json", "[{\"file_name\": \"f.png\", \"caption\": \"dir 11 v2\"}]");
    expect1(c, dirs[11], "f.png", "meta.json", "dir 11 v1");
    /* Touch 8 other directories: dirs[11] is evicted and re-read. */
    for (int i = 0; i < 8; i++) expect1(c, dirs[i], "g.png", "filename", "g");
    expect1(c, dirs[11], "f.png", "meta.json", "dir 11 v2");
    dfm_captioner_free(c);
    dfm_captioner_free(NULL);
}

/* Files written on Windows: a UTF-8 byte order mark at the start of the file (and of a caption
 * string), CRLF and CR line ends, for every source. */
#define BOM "\xEF\xBB\xBF"
TEST(captions_bom_and_crlf_each_source)
{
    char dir[512];
    mkdirs(dir, sizeof dir, "bom");
    put(dir, "t.txt", BOM "a cat\r\non the grass\r\n");
    put(dir, "t2.txt", BOM "  " BOM "two marks\rold mac\r");
    put(dir, "j.json", BOM "{\r\n  \"caption\": \"" BOM "json caption\"\r\n}\r\n");
    put(dir, "meta.json", BOM "[{\"file_name\": \"m.png\",\r\n \"caption\": \"" BOM "meta\\r\\ncaption\"}]\r\n");
    put(dir, "captions.json", BOM "{\"c.png\": [\"" BOM "caps one\", \"caps\\r\\ntwo\"]}");
    put(dir, "crlf_internvl.json", BOM "{\"file_name\": \"crlf_sample_1.png\", \"internvl\": \"" BOM "ivl one\"}\r\n"
                                      "{\"file_name\": \"crlf_sample_2.png\", \"internvl\": \"ivl two\"}\r\n");
    /* CR only: every line is read, not just the first */
    put(dir, "cr_internvl.json", "{\"file_name\": \"cr_sample_1.png\", \"internvl\": \"cr one\"}\r"
                                    "{\"file_name\": \"cr_sample_2.png\", \"internvl\": \"cr two\"}\r");
    put(dir, "arr_internvl.json", BOM "\r\n[{\"file_name\": \"arr_sample_1.png\", \"internvl\": \"arr one\"}]\r\n");
    put(dir, "mf.jsonl", BOM "{\"file_name\": \"x.png\", \"caption\": \"" BOM "manifest x\"}\r\n"
                            "{\"file_name\": \"y.png\", \"caption\": \"manifest y\"}\r"
                            "{\"file_name\": \"z.png\", \"caption\": \"manifest z\"}\r\n");
    dfm_captioner *c = NULL;
    CHECK_EQ(dfm_captioner_new(&c, NULL), 0);
    if (!c) return;
    expect1(c, dir, "t.png", "txt", "a cat on the grass");
    expect1(c, dir, "t2.png", "txt", "two marks old mac");
    expect1(c, dir, "j.png", "json", "json caption");
    expect1(c, dir, "m.png", "meta.json", "meta caption");
    dfm_captions caps;
    CHECK_STR(find(c, dir, "c.png", &caps), "captions.json");
    CHECK_EQ(caps.n, 2);
    if (caps.n == 2) {
        CHECK_STR(caps.text[0], "caps one");
        CHECK_STR(caps.text[1], "caps two");
    }
    dfm_captions_free(&caps);
    expect1(c, dir, "crlf_sample_1.png", "internvl", "ivl one");
    expect1(c, dir, "crlf_sample_2.png", "internvl", "ivl two");
    expect1(c, dir, "cr_sample_1.png", "internvl", "cr one");
    expect1(c, dir, "cr_sample_2.png", "internvl", "cr two");
    expect1(c, dir, "arr_sample_1.png", "internvl", "arr one");
    expect1(c, dir, BOM "fallback_name.png", "filename", "fallback name");
    dfm_captioner_free(c);

    char mpath[700];
    snprintf(mpath, sizeof mpath, "%s/mf.jsonl", dir);
    dfm_caption_opts o = {.manifest = mpath};
    CHECK_EQ(dfm_captioner_new(&c, &o), 0);
    if (!c) return;
    expect1(c, dir, "x.png", "manifest", "manifest x");
    expect1(c, dir, "y.png", "manifest", "manifest y");
    expect1(c, dir, "z.png", "manifest", "manifest z");
    dfm_captioner_free(c);

    /* the cleaning alone: leading marks go, one inside the text stays */
    char a[] = BOM " \t" BOM "x" BOM "y\r\n";
    dfm_caption_clean(a);
    CHECK_STR(a, "x" BOM "y");
    char b[] = BOM;
    dfm_caption_clean(b);
    CHECK_STR(b, "");
    char d[] = "\xEF\xBB"; /* a truncated mark is not one */
    dfm_caption_clean(d);
    CHECK_STR(d, "\xEF\xBB");
}

/* NeMo's cleaning: NeMo's _prompt_clean (no ftfy) against Python's output. */
static const char *const k_nemo_cases[][2] = {
    {"Tom &amp;amp; Jerry", "Tom & Jerry"},
    {"&lt;b&gt;bold&lt;/b&gt; text", "<b>bold</b> text"},
    {"it&#39;s &#233;t&#xE9; &#8212; ok", "it's \xc3\xa9""t\xc3\xa9"" \xe2\x80\x94"" ok"},
    {"a\x09""b\x0a""\x0a""c\xc2\xa0""d  e\xe2\x80\x83""f\xe3\x80\x80""g", "a b c d e f g"},
    {"  lead and trail  ", "lead and trail"},
    {"&nbsp;", ""},
    {"&#32;&#9;&#10;", ""},
    {"x\x1d""y\x1c""", "x y"}, /* str.isspace(): NeMo's re, not diffusers' regex */
    {"\x1f"" lead", "lead"},
    {"&amp;#28;x", "x"},
    {"&amp;amp;amp;", "&amp;"}, /* two passes, no more */
    {"&amp&ampx", "&&x"},
    {"caf\xc3\xa9"" \xf0\x9f\x98\x80""  smile", "caf\xc3\xa9"" \xf0\x9f\x98\x80"" smile"},
    {"a\xc2\x85""b\xe2\x80\xa8""c\xe2\x80\xa9""d\xe2\x80\xaf""e\xe2\x81\x9f""f\xe1\x9a\x80""g", "a b c d e f g"},
    {"zero\xe2\x80\x8b""width", "zero\xe2\x80\x8b""width"}, /* U+200B is not space */
    {"&quot;q&quot; &apos;a&apos;", "\"q\" 'a'"},
    {"a &amp;nbsp; b", "a b"},
};

TEST(captions_collapse_space_is_python_isspace)
{
    /* every code point str.isspace() takes, each between two letters, is one space */
    static const char *const spaces[] = {"\t", "\n", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f", " ",
                                         "\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x8a",
                                         "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"};
    for (size_t i = 0; i < sizeof spaces / sizeof *spaces; i++) {
        char b[32];
        snprintf(b, sizeof b, "%sa%s%sb%s", spaces[i], spaces[i], spaces[i], spaces[i]);
        dfm_caption_collapse_space(b);
        if (strcmp(b, "a b")) fprintf(stderr, "  space %zu\n", i);
        CHECK_STR(b, "a b");
    }
    /* and what it does not take: U+180E, U+200B, U+FEFF, U+2060; invalid, overlong or cut bytes */
    static const char *const kept[] = {"a\xe1\xa0\x8e""b", "a\xe2\x80\x8b""b", "a\xef\xbb\xbf""b", "a\xe2\x81\xa0""b",
                                       "a\xc2", "a\xe0\x82\x85""b", "a\xc1\x85""b", "\xff\xfe", "a\xe2\x80"};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        char b[32];
        snprintf(b, sizeof b, "%s", kept[i]);
        dfm_caption_collapse_space(b);
        CHECK_STR(b, kept[i]);
    }
    char e[] = "";
    dfm_caption_collapse_space(e);
    CHECK_STR(e, "");
    dfm_caption_collapse_space(NULL);
}

TEST(captions_nemo_clean_matches_python)
{
    for (size_t i = 0; i < sizeof k_nemo_cases / sizeof *k_nemo_cases; i++) {
        char *o = dfm_prompt_clean(k_nemo_cases[i][0], strlen(k_nemo_cases[i][0]));
        CHECK(o != NULL);
        if (!o) continue;
        dfm_caption_collapse_space(o);
        if (strcmp(o, k_nemo_cases[i][1])) fprintf(stderr, "  case %zu: got '%s'\n", i, o);
        CHECK_STR(o, k_nemo_cases[i][1]);
        free(o);
    }
}

/* Through dfm_captions_find: each source's caption cleaned after the source is chosen; a caption
 * that cleans to "" stays "" (no fall-through to the file name); off by default. */
TEST(captions_find_clean_captions)
{
    char dir[600];
    mkdirs(dir, sizeof dir, "nemo_clean");
    for (size_t i = 0; i < sizeof k_nemo_cases / sizeof *k_nemo_cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%zu.txt", i);
        put(dir, name, k_nemo_cases[i][0]);
    }
    put(dir, "j.json", "{\"caption\": \"x &amp;lt;y&amp;gt;\\u00a0 z\"}");
    put(dir, "captions.json", "{\"m.png\": [\"one &amp; two\", \"&nbsp;\", \"three\"]}");
    dfm_caption_opts o = {.prompt_clean = dfm_prompt_clean};
    dfm_captioner *c = NULL;
    CHECK_EQ(dfm_captioner_new(&c, &o), 0);
    if (!c) return;
    for (size_t i = 0; i < sizeof k_nemo_cases / sizeof *k_nemo_cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%zu.png", i);
        /* a caption file of white space only is passed over before cleaning (dfm's rule) */
        expect1(c, dir, name, "txt", k_nemo_cases[i][1]);
    }
    expect1(c, dir, "j.mp4", "json", "x <y> z");
    expect1(c, dir, "Rock_&amp;_Roll.png", "filename", "Rock & Roll"); /* NeMo cleans the fallback too */
    dfm_captions caps;
    CHECK_STR(find(c, dir, "m.png", &caps), "captions.json");
    CHECK_EQ(caps.n, 3);
    if (caps.n == 3) {
        CHECK_STR(caps.text[0], "one & two");
        CHECK_STR(caps.text[1], "");
        CHECK_STR(caps.text[2], "three");
    }
    dfm_captions_free(&caps);
    dfm_captioner_free(c);
    /* off: only dfm's trimming */
    CHECK_EQ(dfm_captioner_new(&c, NULL), 0);
    if (!c) return;
    expect1(c, dir, "t0.png", "txt", "Tom &amp;amp; Jerry");
    expect1(c, dir, "t5.png", "txt", "&nbsp;");
    dfm_captioner_free(c);
}
