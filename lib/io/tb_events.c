/* tb_events.c — TensorBoard event files (tb_events.h): TFRecord framing with masked CRC32C, the
 * few protobuf fields of tensorboard.Event / Summary / Summary.Value we write, a reader that
 * verifies every CRC and skips what it does not know, and the purge a resumed run needs.
 *
 * Protobuf wire format, just what we use: a field is a varint key (number << 3 | wire type);
 * wire type 0 varint, 1 eight bytes LE, 2 varint length + bytes, 5 four bytes LE.
 *   Event:         wall_time 1 (double), step 2 (int64), file_version 3 (string), summary 5
 *   Summary:       value 1 (repeated Summary.Value)
 *   Summary.Value: tag 1 (string), simple_value 2 (float, member of oneof value with 3,4,5,6,8)
 * ref: tensorboard/compat/proto/event.proto Event, summary.proto Summary
 * ref: tensorboard/summary/writer/record_writer.py RecordWriter.write
 * ref: tensorboard/compat/tensorflow_stub/pywrap_tensorflow.py masked_crc32c, crc32c
 *
 * Not here: any other summary kind, groups (wire types 3, 4), compression, GCS/S3 paths.
 */
#include "io/tb_events.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/utf8.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- CRC-32C ----------------------------------------------------------------------------- */

/* crc_table[i] = CRC-32C of the byte i, reflected polynomial 0x82F63B78 (tests/unit/
 * test_tb_events.c recomputes it bit by bit). */
static const uint32_t crc_table[256] = {
    0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c,
    0x26a1e7e8, 0xd4ca64eb, 0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b,
    0x4d43cfd0, 0xbf284cd3, 0xac78bf27, 0x5e133c24, 0x105ec76f, 0xe235446c,
    0xf165b798, 0x030e349b, 0xd7c45070, 0x25afd373, 0x36ff2087, 0xc494a384,
    0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54, 0x5d1d08bf, 0xaf768bbc,
    0xbc267848, 0x4e4dfb4b, 0x20bd8ede, 0xd2d60ddd, 0xc186fe29, 0x33ed7d2a,
    0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35, 0xaa64d611, 0x580f5512,
    0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa,
    0x30e349b1, 0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad,
    0x1642ae59, 0xe4292d5a, 0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a,
    0x7da08661, 0x8fcb0562, 0x9c9bf696, 0x6ef07595, 0x417b1dbc, 0xb3109ebf,
    0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0, 0x67dafa54, 0x95b17957,
    0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c, 0xfe53516f,
    0xed03a29b, 0x1f682198, 0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927,
    0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38, 0xdbfc821c, 0x2997011f,
    0x3ac7f2eb, 0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7,
    0x61c69362, 0x93ad1061, 0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e,
    0x4767748a, 0xb50cf789, 0xeb1fcbad, 0x197448ae, 0x0a24bb5a, 0xf84f3859,
    0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46, 0x7198540d, 0x83f3d70e,
    0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5, 0xa55230e6,
    0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de,
    0xdde0eb2a, 0x2f8b6829, 0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c,
    0x456cac67, 0xb7072f64, 0xa457dc90, 0x563c5f93, 0x082f63b7, 0xfa44e0b4,
    0xe9141340, 0x1b7f9043, 0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c,
    0x92a8fc17, 0x60c37f14, 0x73938ce0, 0x81f80fe3, 0x55326b08, 0xa759e80b,
    0xb4091bff, 0x466298fc, 0x1871a4d8, 0xea1a27db, 0xf94ad42f, 0x0b21572c,
    0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033, 0xa24bb5a6, 0x502036a5,
    0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
    0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975,
    0x0e330a81, 0xfc588982, 0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d,
    0x758fe5d6, 0x87e466d5, 0x94b49521, 0x66df1622, 0x38cc2a06, 0xcaa7a905,
    0xd9f75af1, 0x2b9cd9f2, 0xff56bd19, 0x0d3d3e1a, 0x1e6dcdee, 0xec064eed,
    0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530, 0x0417b1db, 0xf67c32d8,
    0xe52cc12c, 0x1747422f, 0x49547e0b, 0xbb3ffd08, 0xa86f0efc, 0x5a048dff,
    0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0, 0xd3d3e1ab, 0x21b862a8,
    0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540,
    0x590ab964, 0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78,
    0x7fab5e8c, 0x8dc0dd8f, 0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee,
    0x24aa3f05, 0xd6c1bc06, 0xc5914ff2, 0x37faccf1, 0x69e9f0d5, 0x9b8273d6,
    0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9, 0x4f48173d, 0xbd23943e,
    0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a, 0xc69f7b69,
    0xd5cf889d, 0x27a40b9e, 0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e,
    0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

uint32_t dfm_tb_crc32c(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

uint32_t dfm_tb_masked_crc32c(const void *data, size_t n)
{
    uint32_t c = dfm_tb_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- little-endian and protobuf encoding ------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int varint_len(uint64_t v)
{
    int n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static int put_varint(dfm_buf *b, uint64_t v)
{
    uint8_t t[10];
    int n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    return dfm_buf_append(b, t, (size_t)n);
}

static int put_fixed(dfm_buf *b, uint8_t key, uint64_t v, int n)
{
    uint8_t t[9];
    t[0] = key;
    put_le(t + 1, v, n);
    return dfm_buf_append(b, t, (size_t)n + 1);
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

int dfm_tb_record_append(dfm_buf *out, const void *data, size_t n)
{
    uint8_t h[12], f[4];
    put_le(h, (uint64_t)n, 8);
    put_le(h + 8, dfm_tb_masked_crc32c(h, 8), 4);
    put_le(f, dfm_tb_masked_crc32c(data, n), 4);
    int rc;
    if ((rc = dfm_buf_reserve(out, n + 16)) < 0) return rc;
    dfm_buf_append(out, h, 12);
    dfm_buf_append(out, data, n);
    return dfm_buf_append(out, f, 4);
}

static int check_tag(const char *tag)
{
    if (!tag || !*tag) return dfm_fail(DFM_E_ARG, "tensorboard tag is empty");
    if (!dfm_utf8_valid(tag, strlen(tag)))
        return dfm_fail(DFM_E_ARG, "tensorboard tag '%s' is not valid UTF-8", tag);
    return 0;
}

/* ref: python protobuf Event.SerializeToString(): fields in number order, proto3 zero scalars
 * (wall_time, step) omitted; simple_value is a oneof member, so written even when 0. */
int dfm_tb_scalar_event(dfm_buf *out, const char *tag, int64_t step, float value, double wall_time)
{
    int rc = check_tag(tag);
    if (rc < 0) return rc;
    size_t tlen = strlen(tag);
    uint32_t vbits;
    memcpy(&vbits, &value, 4);
    size_t value_len = 1 + (size_t)varint_len(tlen) + tlen + 5;    /* tag, simple_value */
    size_t summary_len = 1 + (size_t)varint_len(value_len) + value_len; /* value */
    if (double_bits(wall_time) && (rc = put_fixed(out, 0x09, double_bits(wall_time), 8)) < 0)
        return rc;
    if (step) {
        if ((rc = dfm_buf_append(out, "\x10", 1)) < 0) return rc;
        if ((rc = put_varint(out, (uint64_t)step)) < 0) return rc;
    }
    if ((rc = dfm_buf_append(out, "\x2a", 1)) < 0 || (rc = put_varint(out, summary_len)) < 0 ||
        (rc = dfm_buf_append(out, "\x0a", 1)) < 0 || (rc = put_varint(out, value_len)) < 0 ||
        (rc = dfm_buf_append(out, "\x0a", 1)) < 0 || (rc = put_varint(out, tlen)) < 0 ||
        (rc = dfm_buf_append(out, tag, tlen)) < 0)
        return rc;
    return put_fixed(out, 0x15, vbits, 4);
}

/* An image summary: Summary.Value {tag = 1, image = 4: Image {height = 1, width = 2, colorspace = 3,
 * encoded_image_string = 4}} (tensorboard/compat/proto/summary.proto). */
int dfm_tb_image_event(dfm_buf *out, const char *tag, int64_t step, const void *png, size_t png_len, int height, int width,
                       double wall_time)
{
    int rc = check_tag(tag);
    if (rc < 0) return rc;
    if (height < 1 || width < 1 || !png || !png_len) return dfm_fail(DFM_E_ARG, "TensorBoard image '%s': no image", tag);
    size_t tlen = strlen(tag);
    size_t img_len = 1 + (size_t)varint_len((uint64_t)height) + 1 + (size_t)varint_len((uint64_t)width) + 2 + 1 +
                     (size_t)varint_len(png_len) + png_len;
    size_t value_len = 1 + (size_t)varint_len(tlen) + tlen + 1 + (size_t)varint_len(img_len) + img_len;
    size_t summary_len = 1 + (size_t)varint_len(value_len) + value_len;
    if (double_bits(wall_time) && (rc = put_fixed(out, 0x09, double_bits(wall_time), 8)) < 0) return rc;
    if (step && ((rc = dfm_buf_append(out, "\x10", 1)) < 0 || (rc = put_varint(out, (uint64_t)step)) < 0)) return rc;
    if ((rc = dfm_buf_append(out, "\x2a", 1)) < 0 || (rc = put_varint(out, summary_len)) < 0 ||
        (rc = dfm_buf_append(out, "\x0a", 1)) < 0 || (rc = put_varint(out, value_len)) < 0 ||
        (rc = dfm_buf_append(out, "\x0a", 1)) < 0 || (rc = put_varint(out, tlen)) < 0 ||
        (rc = dfm_buf_append(out, tag, tlen)) < 0 || (rc = dfm_buf_append(out, "\x22", 1)) < 0 ||
        (rc = put_varint(out, img_len)) < 0 || (rc = dfm_buf_append(out, "\x08", 1)) < 0 ||
        (rc = put_varint(out, (uint64_t)height)) < 0 || (rc = dfm_buf_append(out, "\x10", 1)) < 0 ||
        (rc = put_varint(out, (uint64_t)width)) < 0 || (rc = dfm_buf_append(out, "\x18\x03", 2)) < 0 ||
        (rc = dfm_buf_append(out, "\x22", 1)) < 0 || (rc = put_varint(out, png_len)) < 0)
        return rc;
    return dfm_buf_append(out, png, png_len) < 0 ? DFM_E_NOMEM : 0;
}

/* ---- writer ------------------------------------------------------------------------------ */

struct dfm_tb {
    FILE *f;
    char *path;
    dfm_buf rec; /* scratch: one event, then its record */
    dfm_buf ev;
    int err;     /* first error met; every later call returns it */
};

static atomic_int g_seq;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some file systems refuse fsync on a directory */
        close(fd);
    }
}

static int write_record(dfm_tb *tb, const dfm_buf *ev)
{
    if (tb->err) return tb->err;
    tb->rec.len = 0;
    int rc = dfm_tb_record_append(&tb->rec, ev->data, ev->len);
    if (rc < 0) return tb->err = rc;
    if (fwrite(tb->rec.data, 1, tb->rec.len, tb->f) != tb->rec.len)
        return tb->err = dfm_fail(DFM_E_IO, "cannot write '%s': %s", tb->path, strerror(errno));
    return 0;
}

/* The seconds for a new file's name: now, or one past the newest events file already in dir if
 * that is not older — TensorBoard reads a directory's files in name order, so a resumed run's
 * file must sort after the crashed run's even when both start in the same second. */
static long long name_seconds(const char *dir, long long now)
{
    long long t = now;
    DIR *d = opendir(dir);
    if (!d) return t;
    struct dirent *de;
    while ((de = readdir(d))) {
        long long s;
        if (sscanf(de->d_name, "events.out.tfevents.%lld.", &s) == 1 && s >= t) t = s + 1;
    }
    closedir(d);
    return t;
}

int dfm_tb_open(dfm_tb **out, const char *dir)
{
    *out = NULL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dfm_fail(DFM_E_IO, "cannot create directory '%s': %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return dfm_fail(DFM_E_IO, "'%s' is not a directory", dir);
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0]) strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *h = host; *h; h++)
        if (*h == '/') *h = '_';
    dfm_tb *tb = dfm_calloc(1, sizeof *tb);
    if (!tb) return DFM_E_NOMEM;
    double wall = now_seconds();
    long long secs = name_seconds(dir, (long long)wall);
    int fd = -1;
    dfm_buf name = {0};
    for (int tries = 0; fd < 0 && tries < 1000; tries++) {
        name.len = 0;
        if (dfm_buf_printf(&name, "%s/events.out.tfevents.%010lld.%s.%d.%d", dir, secs, host,
                           (int)getpid(), atomic_fetch_add(&g_seq, 1)) < 0)
            break;
        fd = open((char *)name.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int rc = dfm_fail(DFM_E_IO, "cannot create an events file in '%s': %s", dir,
                          strerror(errno));
        dfm_buf_free(&name);
        free(tb);
        return rc;
    }
    tb->path = (char *)name.data;
    tb->f = fdopen(fd, "wb");
    if (!tb->f) {
        int rc = dfm_fail(DFM_E_IO, "cannot open '%s': %s", tb->path, strerror(errno));
        close(fd);
        unlink(tb->path);
        free(tb->path);
        free(tb);
        return rc;
    }
    fsync_dir(dir);
    /* Event{wall_time, file_version: "brain.Event:2"} */
    int rc = put_fixed(&tb->ev, 0x09, double_bits(wall), 8);
    if (rc >= 0) rc = dfm_buf_append(&tb->ev, "\x1a\x0d" "brain.Event:2", 15);
    if (rc >= 0) rc = write_record(tb, &tb->ev);
    if (rc >= 0) rc = dfm_tb_flush(tb);
    if (rc < 0) {
        dfm_tb_close(tb);
        return rc;
    }
    *out = tb;
    return 0;
}

const char *dfm_tb_path(const dfm_tb *tb) { return tb->path; }

int dfm_tb_scalar_at(dfm_tb *tb, const char *tag, int64_t step, float value, double wall_time)
{
    if (tb->err) return tb->err;
    tb->ev.len = 0;
    int rc = dfm_tb_scalar_event(&tb->ev, tag, step, value, wall_time);
    if (rc < 0) return rc; /* a bad tag is the caller's error, not the writer's */
    return write_record(tb, &tb->ev);
}

int dfm_tb_scalar(dfm_tb *tb, const char *tag, int64_t step, float value)
{
    return dfm_tb_scalar_at(tb, tag, step, value, now_seconds());
}

int dfm_tb_image(dfm_tb *tb, const char *tag, int64_t step, const void *png, size_t png_len, int height, int width)
{
    if (tb->err) return tb->err;
    tb->ev.len = 0;
    int rc = dfm_tb_image_event(&tb->ev, tag, step, png, png_len, height, width, now_seconds());
    if (rc < 0) return rc;
    return write_record(tb, &tb->ev);
}

int dfm_tb_flush(dfm_tb *tb)
{
    if (tb->err) return tb->err;
    if (fflush(tb->f) != 0 || fsync(fileno(tb->f)) != 0)
        return tb->err = dfm_fail(DFM_E_IO, "cannot write '%s': %s", tb->path, strerror(errno));
    return 0;
}

int dfm_tb_close(dfm_tb *tb)
{
    if (!tb) return 0;
    int rc = dfm_tb_flush(tb);
    if (fclose(tb->f) != 0 && rc == 0)
        rc = dfm_fail(DFM_E_IO, "cannot close '%s': %s", tb->path, strerror(errno));
    dfm_buf_free(&tb->rec);
    dfm_buf_free(&tb->ev);
    free(tb->path);
    free(tb);
    return rc;
}

/* ---- record reader ----------------------------------------------------------------------- */

typedef struct {
    FILE *f;
    const char *path;
    uint64_t size, off; /* file size at open, offset of the next record */
    dfm_buf data;       /* the current record's payload */
    int truncated;
} rec_reader;

static int rec_open(rec_reader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    r->f = fopen(path, "rb");
    struct stat st;
    if (!r->f || fstat(fileno(r->f), &st) != 0) {
        int rc = dfm_fail(DFM_E_IO, "cannot open '%s': %s", path, strerror(errno));
        if (r->f) fclose(r->f);
        r->f = NULL;
        return rc;
    }
    r->size = (uint64_t)st.st_size;
    return 0;
}

static void rec_close(rec_reader *r)
{
    if (r->f) fclose(r->f);
    dfm_buf_free(&r->data);
}

/* 1: a verified record in r->data (it started at *at); 0: end of file (r->truncated says
 * whether it ended inside a record); < 0: error. */
static int rec_next(rec_reader *r, uint64_t *at)
{
    uint8_t h[12];
    *at = r->off;
    size_t got = fread(h, 1, 12, r->f);
    if (got == 0 && feof(r->f)) return 0;
    if (got < 12) {
        if (ferror(r->f)) return dfm_fail(DFM_E_IO, "cannot read '%s': %s", r->path, strerror(errno));
        r->truncated = 1;
        return 0;
    }
    if ((uint32_t)get_le(h + 8, 4) != dfm_tb_masked_crc32c(h, 8))
        return dfm_fail(DFM_E_FORMAT, "'%s': bad length CRC in the record at byte offset %llu",
                        r->path, (unsigned long long)r->off);
    uint64_t n = get_le(h, 8);
    uint64_t left = r->off + 12 <= r->size ? r->size - r->off - 12 : 0;
    if (n > left || left - n < 4) {
        r->truncated = 1; /* the writer was killed inside this record */
        return 0;
    }
    r->data.len = 0;
    if (dfm_buf_reserve(&r->data, (size_t)n + 4) < 0) return DFM_E_NOMEM;
    got = fread(r->data.data, 1, (size_t)n + 4, r->f);
    if (got < n + 4) {
        if (ferror(r->f)) return dfm_fail(DFM_E_IO, "cannot read '%s': %s", r->path, strerror(errno));
        r->truncated = 1; /* shrank since we looked */
        return 0;
    }
    r->data.len = (size_t)n;
    if ((uint32_t)get_le(r->data.data + n, 4) != dfm_tb_masked_crc32c(r->data.data, (size_t)n))
        return dfm_fail(DFM_E_FORMAT, "'%s': bad data CRC in the record at byte offset %llu",
                        r->path, (unsigned long long)r->off);
    r->off += 16 + n;
    return 1;
}

/* ---- protobuf decoding ------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} cur;

typedef struct {
    uint32_t num;
    int wt;
    uint64_t v;          /* wire types 0, 1, 5 */
    const uint8_t *data; /* wire type 2 */
    size_t len;
} field;

static int get_varint(cur *c, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < 10; i++) {
        if (c->p >= c->end) return -1;
        uint8_t b = *c->p++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* 1: a field in *f; 0: end of message; -1: malformed. */
static int next_field(cur *c, field *f)
{
    if (c->p >= c->end) return 0;
    uint64_t key;
    if (get_varint(c, &key) < 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) return -1;
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    switch (f->wt) {
    case 0: return get_varint(c, &f->v) < 0 ? -1 : 1;
    case 1:
    case 5: {
        size_t n = f->wt == 1 ? 8 : 4;
        if ((size_t)(c->end - c->p) < n) return -1;
        f->v = get_le(c->p, (int)n);
        c->p += n;
        return 1;
    }
    case 2: {
        uint64_t n;
        if (get_varint(c, &n) < 0 || n > (uint64_t)(c->end - c->p)) return -1;
        f->data = c->p;
        f->len = (size_t)n;
        c->p += n;
        return 1;
    }
    default: return -1; /* groups (3, 4) and 6, 7 do not occur in these messages */
    }
}

typedef struct {
    double wall_time;
    int64_t step;
    int file_version;    /* the event is a file_version event */
    int summary;         /* the event is a summary event */
    size_t summary_from; /* byte offset of the first summary field that counts */
} event_head;

/* Pass one over an Event: wall_time, step and which member of `oneof what` it holds. As
 * protobuf parses it, the last occurrence of a scalar wins, setting a oneof member clears the
 * others, and repeated summary fields merge — so the summary is made of the summary fields after
 * the last other member. A known field number with the wrong wire type is an unknown field,
 * skipped. Returns 0 or -1 (malformed). */
static int parse_event_head(const uint8_t *p, size_t n, event_head *e)
{
    memset(e, 0, sizeof *e);
    cur c = {p, p + n};
    field f;
    int r;
    while ((r = next_field(&c, &f)) > 0) {
        if (f.num == 1 && f.wt == 1) {
            uint64_t u = f.v;
            memcpy(&e->wall_time, &u, 8);
        } else if (f.num == 2 && f.wt == 0) {
            e->step = (int64_t)f.v;
        } else if (f.num >= 3 && f.num <= 9 && f.wt == 2) { /* members of oneof what */
            e->file_version = f.num == 3;
            if (f.num != 5) e->summary_from = (size_t)(c.p - p);
            e->summary = f.num == 5;
        }
    }
    return r;
}

/* One Summary.Value: its tag into *tag (NUL-terminated) and, if its oneof holds simple_value,
 * the value. Returns 1 (a scalar), 0 (not a scalar) or -1 (malformed). */
static int parse_value(const uint8_t *p, size_t n, dfm_buf *tag, float *value)
{
    cur c = {p, p + n};
    field f;
    int r, simple = 0;
    tag->len = 0;
    while ((r = next_field(&c, &f)) > 0) {
        if (f.num == 1 && f.wt == 2) {
            if (memchr(f.data, 0, f.len)) return -1; /* we hand tags on as C strings */
            tag->len = 0;
            if (dfm_buf_append(tag, f.data, f.len) < 0) return -1;
        } else if (f.num == 2 && f.wt == 5) {
            uint32_t u = (uint32_t)f.v;
            memcpy(value, &u, 4);
            simple = 1;
        } else if ((f.num == 3 || f.num == 4 || f.num == 5 || f.num == 6 || f.num == 8) &&
                   f.wt == 2) {
            simple = 0; /* another member of oneof value replaced it */
        }
    }
    if (r < 0 || dfm_buf_append(tag, "", 1) < 0) return -1;
    return simple;
}

/* Pass two: call fn for every scalar of every summary field. */
static int emit_scalars(const uint8_t *p, size_t n, const event_head *e, dfm_tb_scalar_fn fn,
                        void *ctx, dfm_buf *tag, int *malformed)
{
    cur c = {p + e->summary_from, p + n};
    field f, g;
    int r;
    *malformed = 0;
    if (!e->summary) return 0;
    while ((r = next_field(&c, &f)) > 0) {
        if (f.num != 5 || f.wt != 2) continue;
        cur s = {f.data, f.data + f.len};
        while ((r = next_field(&s, &g)) > 0) {
            if (g.num != 1 || g.wt != 2) continue;
            float v = 0;
            int k = parse_value(g.data, g.len, tag, &v);
            if (k < 0) return *malformed = 1, 0;
            if (k == 1 && fn) {
                int rc = fn(ctx, (const char *)tag->data, e->step, v, e->wall_time);
                if (rc) return rc;
            }
        }
        if (r < 0) break;
    }
    if (r != 0) *malformed = 1;
    return 0;
}

int dfm_tb_read(const char *path, dfm_tb_scalar_fn fn, void *ctx, int *truncated)
{
    if (truncated) *truncated = 0;
    rec_reader r;
    int rc = rec_open(&r, path);
    if (rc < 0) return rc;
    dfm_buf tag = {0};
    uint64_t at;
    while ((rc = rec_next(&r, &at)) > 0) {
        event_head e;
        int malformed = 0;
        if (parse_event_head(r.data.data, r.data.len, &e) < 0) malformed = 1;
        else rc = emit_scalars(r.data.data, r.data.len, &e, fn, ctx, &tag, &malformed);
        if (malformed) {
            rc = dfm_fail(DFM_E_FORMAT, "'%s': the record at byte offset %llu is not an Event",
                          path, (unsigned long long)at);
            break;
        }
        if (rc) break;
    }
    if (rc == 0 && r.truncated) {
        if (truncated) *truncated = 1;
        else
            rc = dfm_fail(DFM_E_FORMAT, "'%s': truncated record at byte offset %llu", path,
                          (unsigned long long)r.off);
    }
    dfm_buf_free(&tag);
    rec_close(&r);
    return rc;
}

/* ---- purge ------------------------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Rewrite one file without its events past `step`; *removed += how many went. */
static int purge_file(const char *dir, const char *path, int64_t step, int *removed)
{
    rec_reader r;
    int rc = rec_open(&r, path);
    if (rc < 0) return rc;
    dfm_buf keep = {0};
    int dropped = 0;
    uint64_t at;
    while ((rc = rec_next(&r, &at)) > 0) {
        event_head e;
        if (parse_event_head(r.data.data, r.data.len, &e) < 0) {
            rc = dfm_fail(DFM_E_FORMAT, "'%s': the record at byte offset %llu is not an Event",
                          path, (unsigned long long)at);
            break;
        }
        if (!e.file_version && e.step > step) dropped++;
        else if ((rc = dfm_tb_record_append(&keep, r.data.data, r.data.len)) < 0) break;
    }
    int truncated = r.truncated;
    rec_close(&r);
    if (rc < 0 || (!dropped && !truncated)) {
        dfm_buf_free(&keep);
        return rc;
    }
    dfm_buf tmp = {0};
    rc = dfm_buf_printf(&tmp, "%s/.dfm-tb-purge.%d.tmp", dir, (int)getpid());
    int fd = rc < 0 ? -1 : open((char *)tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (rc >= 0 && fd < 0)
        rc = dfm_fail(DFM_E_IO, "cannot create '%s': %s", (char *)tmp.data, strerror(errno));
    if (fd >= 0) {
        if (write_all(fd, keep.data, keep.len) != 0 || fsync(fd) != 0)
            rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", (char *)tmp.data, strerror(errno));
        if (close(fd) != 0 && rc >= 0)
            rc = dfm_fail(DFM_E_IO, "cannot write '%s': %s", (char *)tmp.data, strerror(errno));
        if (rc >= 0 && rename((char *)tmp.data, path) != 0)
            rc = dfm_fail(DFM_E_IO, "cannot rename '%s' to '%s': %s", (char *)tmp.data, path,
                          strerror(errno));
        if (rc < 0) unlink((char *)tmp.data);
        else fsync_dir(dir);
    }
    if (rc >= 0) *removed += dropped;
    dfm_buf_free(&tmp);
    dfm_buf_free(&keep);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int dfm_tb_purge_after(const char *dir, int64_t step, int *removed)
{
    int total = 0;
    if (removed) *removed = 0;
    DIR *d = opendir(dir);
    if (!d) return dfm_fail(DFM_E_IO, "cannot open directory '%s': %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, "tfevents")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = dfm_realloc(names, cap * sizeof *names);
            if (!nn) {
                rc = DFM_E_NOMEM;
                break;
            }
            names = nn;
        }
        dfm_buf p = {0};
        if ((rc = dfm_buf_printf(&p, "%s/%s", dir, de->d_name)) < 0) break;
        names[n++] = (char *)p.data;
    }
    closedir(d);
    if (rc == 0) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) != 0 || !S_ISREG(st.st_mode)) continue;
        rc = purge_file(dir, names[i], step, &total);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (removed) *removed = total;
    return rc;
}
