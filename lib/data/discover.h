/* discover.h — finding media files: recursive, sorted walks of the PATH arguments.
 *
 * Images: jpg jpeg png webp bmp. Videos: mp4 avi mov mkv webm. Extensions match case-
 * insensitively; every other file is ignored. Directory entries are visited in byte order
 * (strcmp) with files and sub-directories interleaved in that order; hidden entries (".name")
 * are skipped. Symlinks are followed; a directory cycle is detected and reported.
 * Not here: captions (captions.h), decoding (media/).
 */
#ifndef DFM_DATA_DISCOVER_H
#define DFM_DATA_DISCOVER_H

typedef enum { DFM_MEDIA_NONE = 0, DFM_MEDIA_IMAGE, DFM_MEDIA_VIDEO } dfm_media_kind;

dfm_media_kind dfm_media_kind_of(const char *path);
const char *dfm_media_kind_name(dfm_media_kind k); /* "image", "video" */

/* Called for each media file found. `path` is openable; `name` is the stable source name used
 * for the sample key: for a directory argument D, basename(D) + "/" + the path below D; for a
 * file argument, the path as given without leading "/", "./" or "../" components (so a file listed
 * by `find D` gets the same name as when D is walked). Return 0 to go on, < 0 to stop the walk with that code. */
typedef int (*dfm_walk_fn)(void *ctx, const char *path, const char *name, dfm_media_kind kind);
/* An unreadable sub-directory, and a media-named entry that is not a regular file (a FIFO, a
 * socket, a device: never opened), are reported through warn_fn (may be NULL) and skipped. A
 * missing or unreadable argument is an error (DFM_E_IO), a media-named argument that is not a
 * regular file DFM_E_UNSUPPORTED. A file argument that is not media is ignored. */
typedef void (*dfm_walk_warn_fn)(void *ctx, const char *path, const char *reason);
int dfm_walk(const char *arg, dfm_walk_fn fn, dfm_walk_warn_fn warn_fn, void *ctx);

#endif
