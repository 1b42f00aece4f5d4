/* test_discover.c — media discovery: extension rules, walk order, names, hidden entries,
 * symlinks and cycles, file arguments and errors. */
#include "test.h"
#include "base/error.h"
#include "data/discover.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char names[32][256];
    char paths[32][512];
    int kinds[32];
    int n;
    int warns;
    char warn_paths[8][512];
    int stop_after; /* stop the walk (return -42) after this many files; 0 = never */
} walk_log;

static int on_file(void *ctx, const char *path, const char *name, dfm_media_kind kind)
{
    walk_log *l = ctx;
    if (l->n < 32) {
        snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
        snprintf(l->paths[l->n], sizeof l->paths[0], "%s", path);
        l->kinds[l->n] = kind;
    }
    l->n++;
    if (l->stop_after && l->n >= l->stop_after) return -42;
    return 0;
}

static void on_warn(void *ctx, const char *path, const char *reason)
{
    walk_log *l = ctx;
    if (l->warns < 8) snprintf(l->warn_paths[l->warns], sizeof l->warn_paths[0], "%s", path);
    l->warns++;
}

static void touch(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs("x", f);
        fclose(f);
    }
}

static void mkdir_in(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    mkdir(p, 0755);
}

static void link_in(const char *dir, const char *name, const char *target)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (symlink(target, p) != 0 && errno != EEXIST) perror("symlink");
}

TEST(discover_media_kind)
{
    CHECK_EQ(dfm_media_kind_of("a/b/x.jpg"), DFM_MEDIA_IMAGE);
    CHECK_EQ(dfm_media_kind_of("x.JPEG"), DFM_MEDIA_IMAGE);
    CHECK_EQ(dfm_media_kind_of("x.Png"), DFM_MEDIA_IMAGE);
    CHECK_EQ(dfm_media_kind_of("x.webp"), DFM_MEDIA_IMAGE);
    CHECK_EQ(dfm_media_kind_of("x.BMP"), DFM_MEDIA_IMAGE);
    CHECK_EQ(dfm_media_kind_of("clip.MP4"), DFM_MEDIA_VIDEO);
    CHECK_EQ(dfm_media_kind_of("clip.avi"), DFM_MEDIA_VIDEO);
    CHECK_EQ(dfm_media_kind_of("clip.MoV"), DFM_MEDIA_VIDEO);
    CHECK_EQ(dfm_media_kind_of("clip.mkv"), DFM_MEDIA_VIDEO);
    CHECK_EQ(dfm_media_kind_of("clip.webm"), DFM_MEDIA_VIDEO);
    CHECK_EQ(dfm_media_kind_of("notes.txt"), DFM_MEDIA_NONE);
    CHECK_EQ(dfm_media_kind_of("clip.mp4.json"), DFM_MEDIA_NONE);
    CHECK_EQ(dfm_media_kind_of("jpg"), DFM_MEDIA_NONE);
    CHECK_EQ(dfm_media_kind_of("dir.jpg/file"), DFM_MEDIA_NONE);
    CHECK_EQ(dfm_media_kind_of(".jpg"), DFM_MEDIA_NONE);
    CHECK_EQ(dfm_media_kind_of("x.jpgx"), DFM_MEDIA_NONE);
    CHECK_STR(dfm_media_kind_name(DFM_MEDIA_IMAGE), "image");
    CHECK_STR(dfm_media_kind_name(DFM_MEDIA_VIDEO), "video");
}

/* tmp/disc/data:
 *   B.Mov a.JPG b.png b.txt broken.png->missing c/{.hid/x.png, a.webm, notes.md, z.mp4}
 *   d.jpeg link.mp4->c/z.mp4 loop->. .hidden.png e/(empty) */
static void make_tree(char *root, size_t n)
{
    char base[400];
    snprintf(base, sizeof base, "%s/disc", dfm_test_tmpdir());
    mkdir(base, 0755);
    snprintf(root, n, "%s/data", base);
    mkdir(root, 0755);
    touch(root, "B.Mov");
    touch(root, "a.JPG");
    touch(root, "b.png");
    touch(root, "b.txt");
    touch(root, ".hidden.png");
    touch(root, "d.jpeg");
    mkdir_in(root, "c");
    mkdir_in(root, "c/.hid");
    touch(root, "c/.hid/x.png");
    touch(root, "c/z.mp4");
    touch(root, "c/a.webm");
    touch(root, "c/notes.md");
    mkdir_in(root, "e");
    link_in(root, "link.mp4", "c/z.mp4");
    link_in(root, "loop", ".");
    link_in(root, "broken.png", "missing.png");
}

TEST(discover_walk_order_and_names)
{
    char root[512];
    make_tree(root, sizeof root);
    walk_log l = {0};
    CHECK_EQ(dfm_walk(root, on_file, on_warn, &l), 0);
    const char *want[] = {"data/B.Mov",   "data/a.JPG",  "data/b.png",    "data/c/a.webm",
                          "data/c/z.mp4", "data/d.jpeg", "data/link.mp4"};
    const int kinds[] = {DFM_MEDIA_VIDEO, DFM_MEDIA_IMAGE, DFM_MEDIA_IMAGE, DFM_MEDIA_VIDEO,
                         DFM_MEDIA_VIDEO, DFM_MEDIA_IMAGE, DFM_MEDIA_VIDEO};
    CHECK_EQ(l.n, 7);
    for (int i = 0; i < 7 && i < l.n; i++) {
        CHECK_STR(l.names[i], want[i]);
        CHECK_EQ(l.kinds[i], kinds[i]);
        char p[600];
        snprintf(p, sizeof p, "%s/%s", root, want[i] + 5);
        CHECK_STR(l.paths[i], p);
        CHECK(access(l.paths[i], R_OK) == 0);
    }
    /* Warnings: the dangling link and the cycle, in walk order. */
    CHECK_EQ(l.warns, 2);
    char p[600];
    snprintf(p, sizeof p, "%s/broken.png", root);
    CHECK_STR(l.warn_paths[0], p);
    snprintf(p, sizeof p, "%s/loop", root);
    CHECK_STR(l.warn_paths[1], p);

    /* A trailing slash changes neither names nor (after the slash) paths. */
    walk_log l2 = {0};
    char slash[600];
    snprintf(slash, sizeof slash, "%s/", root);
    CHECK_EQ(dfm_walk(slash, on_file, NULL, &l2), 0);
    CHECK_EQ(l2.n, 7);
    CHECK_STR(l2.names[3], "data/c/a.webm");
    snprintf(p, sizeof p, "%s/c/a.webm", root);
    CHECK_STR(l2.paths[3], p);
}

TEST(discover_symlinked_dir_and_cycle)
{
    char base[400], root[500];
    snprintf(base, sizeof base, "%s/disc2", dfm_test_tmpdir());
    mkdir(base, 0755);
    snprintf(root, sizeof root, "%s/top", base);
    mkdir(root, 0755);
    mkdir_in(root, "sub");
    touch(root, "sub/x.png");
    link_in(root, "sub/up", "..");        /* cycle through an ancestor */
    char other[500];
    snprintf(other, sizeof other, "%s/other", base);
    mkdir(other, 0755);
    touch(other, "y.mkv");
    link_in(root, "ext", "../other");     /* a linked directory that is not a cycle */
    walk_log l = {0};
    CHECK_EQ(dfm_walk(root, on_file, on_warn, &l), 0);
    CHECK_EQ(l.n, 2);
    CHECK_STR(l.names[0], "top/ext/y.mkv");
    CHECK_STR(l.names[1], "top/sub/x.png");
    CHECK_EQ(l.warns, 1);
    char p[600];
    snprintf(p, sizeof p, "%s/sub/up", root);
    CHECK_STR(l.warn_paths[0], p);
}

TEST(discover_file_args_and_errors)
{
    char root[512];
    make_tree(root, sizeof root);
    char p[600];
    walk_log l = {0};
    snprintf(p, sizeof p, "%s/c/z.mp4", root);
    CHECK_EQ(dfm_walk(p, on_file, NULL, &l), 0);
    CHECK_EQ(l.n, 1);
    CHECK_STR(l.names[0], p[0] == '/' ? p + 1 : p); /* the path as given, leading '/' dropped */
    CHECK_STR(l.paths[0], p);
    CHECK_EQ(l.kinds[0], DFM_MEDIA_VIDEO);

    walk_log l2 = {0};
    snprintf(p, sizeof p, "%s/b.txt", root); /* not media: ignored */
    CHECK_EQ(dfm_walk(p, on_file, NULL, &l2), 0);
    CHECK_EQ(l2.n, 0);

    walk_log l3 = {0};
    snprintf(p, sizeof p, "%s/nope", root);
    CHECK_EQ(dfm_walk(p, on_file, NULL, &l3), DFM_E_IO);
    CHECK(strstr(dfm_errmsg(), "No such file") != NULL);
    CHECK(strstr(dfm_errmsg(), "nope") == NULL); /* the caller names the path, once */
    /* a FIFO with a media name is never opened (it would block): an error naming what it is */
    snprintf(p, sizeof p, "%s/pipe.jpg", root);
    CHECK_EQ(mkfifo(p, 0600), 0);
    CHECK_EQ(dfm_walk(p, on_file, NULL, &l3), DFM_E_UNSUPPORTED);
    CHECK(strstr(dfm_errmsg(), "a FIFO, not a regular file") != NULL);
    CHECK_EQ(l3.n, 0);
    unlink(p);
    snprintf(p, sizeof p, "%s/broken.png", root); /* a dangling link argument */
    CHECK_EQ(dfm_walk(p, on_file, NULL, &l3), DFM_E_IO);
    CHECK_EQ(l3.n, 0);

    /* The callback stops the walk with its code. */
    walk_log l4 = {0};
    l4.stop_after = 3;
    CHECK_EQ(dfm_walk(root, on_file, NULL, &l4), -42);
    CHECK_EQ(l4.n, 3);

    /* An empty directory yields nothing. */
    walk_log l5 = {0};
    snprintf(p, sizeof p, "%s/e", root);
    CHECK_EQ(dfm_walk(p, on_file, NULL, &l5), 0);
    CHECK_EQ(l5.n, 0);
}

TEST(discover_dot_argument)
{
    char root[512];
    make_tree(root, sizeof root);
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd)) return;
    char p[600];
    snprintf(p, sizeof p, "%s/c", root);
    if (chdir(p) != 0) {
        CHECK(0);
        return;
    }
    walk_log l = {0};
    int rc = dfm_walk(".", on_file, NULL, &l);
    if (chdir(cwd) != 0) CHECK(0);
    CHECK_EQ(rc, 0);
    CHECK_EQ(l.n, 2);
    CHECK_STR(l.names[0], "c/a.webm"); /* "." is named after the real directory */
    CHECK_STR(l.paths[0], "./a.webm");
}

TEST(discover_unreadable_subdir)
{
    if (geteuid() == 0) return; /* root reads everything; nothing to test */
    char base[400];
    snprintf(base, sizeof base, "%s/disc3", dfm_test_tmpdir());
    mkdir(base, 0755);
    mkdir_in(base, "locked");
    touch(base, "locked/x.png");
    touch(base, "ok.png");
    char p[600];
    snprintf(p, sizeof p, "%s/locked", base);
    chmod(p, 0);
    walk_log l = {0};
    CHECK_EQ(dfm_walk(base, on_file, on_warn, &l), 0);
    CHECK_EQ(l.n, 1);
    CHECK_STR(l.names[0], "disc3/ok.png");
    CHECK_EQ(l.warns, 1);
    CHECK_EQ(dfm_walk(p, on_file, on_warn, &l), DFM_E_IO); /* as an argument it is an error */
    chmod(p, 0755);
}

TEST(discover_file_arg_names)
{
    char root[512];
    make_tree(root, sizeof root);
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd) || chdir(root) != 0) {
        CHECK(0);
        return;
    }
    const char *args[] = {"c/z.mp4", "./c/z.mp4", "c//z.mp4", "../" };
    for (int i = 0; i < 3; i++) {
        walk_log l = {0};
        CHECK_EQ(dfm_walk(args[i], on_file, NULL, &l), 0);
        CHECK_EQ(l.n, 1);
        if (l.n == 1) CHECK_STR(l.names[0], "c/z.mp4");
        CHECK_STR(l.paths[0], args[i]);
    }
    if (chdir(cwd) != 0) CHECK(0);
}
