#!/bin/sh
# make-media-fixtures.sh — regenerate tests/fixtures/media/: tiny images and videos for the
# media unit tests (test_image.c, test_video.c) and Pillow reference outputs for the resampler
# (test_resample.c). Needs the ffmpeg CLI (libx264, libwebp) and python3 with Pillow + numpy.
# Python is only used here, never at test time. The output is committed; run this only to
# change the fixtures. Total size stays well under 300 KB.
set -eu
cd "$(dirname "$0")/.."
OUT=tests/fixtures/media
mkdir -p "$OUT"
FF="ffmpeg -hide_banner -loglevel error -y -threads 1"

# ---- videos ---------------------------------------------------------------------------------
# 64x48, 20 frames at 10 fps; frame N is a flat colour R = 8 + 12 N, G = 200 - 8 N, B = 60 so a
# decoded frame tells its index. H.264 with B-frames (reordering) and short GOPs.
SRC="color=c=black:s=64x48:r=10:d=2,format=rgb24,geq=r='8+12*N':g='200-8*N':b='60'"
X264="-fflags +bitexact -c:v libx264 -preset medium -crf 8 -g 8 -bf 2 -pix_fmt yuv420p -x264-params threads=1"
$FF -f lavfi -i "$SRC" $X264 -movflags +faststart "$OUT/clip.mp4"
# Frame 5 as the ffmpeg CLI converts it (bicubic sws, no accurate rounding): the same bytes as
# OpenCV's VideoCapture (NeMo's reader) and PyAV give; the parity reference for video.c.
ffmpeg -hide_banner -loglevel error -y -i "$OUT/clip.mp4" -vf "select=eq(n\,5)" -frames:v 1 \
    -sws_flags bicubic -f rawvideo -pix_fmt rgb24 "$OUT/clip_f5.rgb"
# Matroska stores no frame count: exercises the counting pass.
$FF -f lavfi -i "$SRC" $X264 "$OUT/clip.mkv"
# Display-matrix rotation: quadrants (TL red, TR green, BL blue, BR white) stored 64x48, 3
# frames, remuxed with rotate=90, which FFmpeg 5.1 turns into a display matrix of +90 degrees
# (counter-clockwise): the ffmpeg CLI shows it 48x64 with TL green, TR white, BL red, BR blue.
QUAD="color=c=white:s=64x48:r=10:d=0.3,format=rgb24,geq=r='if(lt(Y,24),if(lt(X,32),255,0),if(lt(X,32),0,255))':g='if(lt(Y,24),if(lt(X,32),0,255),if(lt(X,32),0,255))':b='if(lt(Y,24),0,255)'"
$FF -f lavfi -i "$QUAD" $X264 "$OUT/tmp_quad.mp4"
$FF -i "$OUT/tmp_quad.mp4" -c copy -metadata:s:v:0 rotate=90 "$OUT/clip_rot90.mp4"
rm -f "$OUT/tmp_quad.mp4"
# Variable frame rate, as phone clips are: the same 20 frames shown at uneven times (frames 0-9
# every 0.1 s, 10-14 every 0.2 s, 15-19 every 0.4 s: 0 ... 0.9, 1.1 ... 1.9, 2.3 ... 3.9 s), time
# base 1/90000. The container's nominal rate says 10 fps; the real average is 19 / 3.9 s.
$FF -f lavfi -i "$SRC" -vf "setpts='(N+if(gt(N,9),N-9,0)+if(gt(N,14),2*(N-14),0))*0.1/TB'" \
    -fps_mode passthrough $X264 -video_track_timescale 90000 "$OUT/clip_vfr.mp4"
# An edit list: clip.mp4 cut at 0.55 s without re-encoding (ffmpeg -ss T -c copy), so the first
# decodable packets before the cut are flagged for discarding; the header still counts them.
$FF -ss 0.55 -i "$OUT/clip.mp4" -c copy "$OUT/clip_cut.mp4"

# ---- images through FFmpeg ------------------------------------------------------------------
# 16x8: left half (255,0,0), right half (0,0,255)
HALVES="color=c=black:s=16x8:d=1,format=rgb24,geq=r='if(lt(X,8),255,0)':g='0':b='if(lt(X,8),0,255)'"
$FF -f lavfi -i "$HALVES" -frames:v 1 -pix_fmt bgr24 "$OUT/halves.bmp"
$FF -f lavfi -i "$HALVES" -frames:v 1 -c:v libwebp -lossless 1 "$OUT/halves_lossless.webp"
$FF -f lavfi -i "$HALVES" -frames:v 1 -c:v libwebp -quality 90 "$OUT/halves_lossy.webp"
# 16-bit RGB PNG: (0x1234, 0x8080, 0xffff) everywhere -> 8-bit about (18, 128, 255)
$FF -f lavfi -i "color=c=0x1280ff:s=8x4:d=1,format=rgb48be,geq=r='4660':g='32896':b='65535'" \
    -frames:v 1 -pix_fmt rgb48be "$OUT/rgb16.png"
# two-frame animated WebP
$FF -f lavfi -i "color=c=red:s=8x8:r=2:d=1,format=rgb24,geq=r='55+N*200':g='0':b='0'" -c:v libwebp_anim -lossless 1 -loop 0 "$OUT/anim.webp"

# ---- everything that needs Pillow -----------------------------------------------------------
python3 - "$OUT" <<'EOF'
import io, os, struct, sys
import numpy as np
from PIL import Image, ImageOps
out = sys.argv[1]

def quadrants(w, h):
    a = np.zeros((h, w, 3), np.uint8)
    a[:h//2, :w//2] = (255, 0, 0)      # TL red
    a[:h//2, w//2:] = (0, 255, 0)      # TR green
    a[h//2:, :w//2] = (0, 0, 255)      # BL blue
    a[h//2:, w//2:] = (255, 255, 255)  # BR white
    return a

# JPEG stored 64x32 with EXIF orientation 6 (displayed rotated 90 degrees clockwise, 32x64).
exif = Image.Exif()
exif[0x0112] = 6
Image.fromarray(quadrants(64, 32)).save(f"{out}/orient6.jpg", quality=95, exif=exif.tobytes())
# Pillow's decode of it after exif_transpose: the parity reference for the JPEG path.
im = ImageOps.exif_transpose(Image.open(f"{out}/orient6.jpg")).convert("RGB")
assert im.size == (32, 64), im.size
open(f"{out}/orient6_pil.rgb", "wb").write(im.tobytes())
# Greyscale JPEG and a CMYK (Adobe) JPEG, which TurboJPEG cannot turn into RGB.
Image.fromarray(np.full((8, 16), 77, np.uint8)).save(f"{out}/grey.jpg", quality=100)
Image.fromarray(quadrants(16, 8)).convert("CMYK").save(f"{out}/cmyk.jpg", quality=95)
# Pillow's RGB view of the CMYK file, for the fallback's test.
open(f"{out}/cmyk_pil.rgb", "wb").write(Image.open(f"{out}/cmyk.jpg").convert("RGB").tobytes())

# dfm_rgb_orient reference: a 3x2 image through ImageOps.exif_transpose for orientations 1..8.
tiny = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 10 + 5
with open(f"{out}/orient_tiny.bin", "wb") as f:
    f.write(tiny.tobytes())
    for o in range(1, 9):
        b = io.BytesIO()
        e = Image.Exif(); e[0x0112] = o
        Image.fromarray(tiny).save(b, "PNG", exif=e.tobytes())
        t = ImageOps.exif_transpose(Image.open(b))
        a = np.asarray(t.convert("RGB"))
        f.write(struct.pack("<ii", a.shape[1], a.shape[0]))
        f.write(a.tobytes())

# PNGs: RGBA with partial alpha, grey 8-bit, grey 16-bit, palette with transparency.
rgba = np.zeros((8, 16, 4), np.uint8)
rgba[:, :8] = (255, 0, 0, 128)   # half-transparent red
rgba[:, 8:] = (0, 0, 0, 0)       # fully transparent -> white
rgba[7, :] = (0, 0, 255, 255)    # opaque blue bottom row
Image.fromarray(rgba).save(f"{out}/alpha.png")
Image.fromarray(np.full((4, 8), 100, np.uint8)).save(f"{out}/grey8.png")
Image.frombytes("I;16", (8, 4), np.full((4, 8), 0x8000, "<u2").tobytes()).save(f"{out}/grey16.png")
pal = Image.frombytes("P", (4, 2), bytes([0, 1, 1, 0] * 2))
pal.putpalette([0, 255, 0, 255, 0, 255] + [0] * 762)
pal.save(f"{out}/pal_trns.png", transparency=0)  # index 0 transparent -> white, 1 magenta

# Lossy WebP of odd size with colour stripes (chroma edges everywhere) and Pillow's decode of it:
# checks that 4:2:0 chroma stays aligned on odd sizes (libwebp's own upsampler is the reference).
x = np.arange(33)[None, :].repeat(17, 0); y = np.arange(17)[:, None].repeat(33, 1)
st = np.zeros((17, 33, 3), np.uint8)
st[..., 0] = np.where((x // 4) % 2 == 0, 230, 20)
st[..., 1] = np.where((x // 4) % 3 == 0, 200, 40)
st[..., 2] = (y * 15).clip(0, 255)
Image.fromarray(st).save(f"{out}/stripes_odd.webp", quality=95)
open(f"{out}/stripes_odd_pil.rgb", "wb").write(Image.open(f"{out}/stripes_odd.webp").convert("RGB").tobytes())

# Resample references: a 97x61 random image and Pillow resizes of it. Index lines:
#   filter rw rh left top dw dh offset   (offset into resample_ref.bin)
rng = np.random.default_rng(1234)
src = rng.integers(0, 256, (61, 97, 3), dtype=np.uint8)
# Smooth areas too, so not every pixel overshoots: blend noise with a gradient on the right.
g = np.linspace(0, 255, 48)[None, :, None]
src[:, 49:] = (src[:, 49:] * 0.3 + g * 0.7).astype(np.uint8)
open(f"{out}/resample_src.rgb", "wb").write(src.tobytes())
im = Image.fromarray(src)
filters = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
           "area": Image.BOX}
cases = [  # (rw, rh, left, top, dw, dh)
    (40, 25, 0, 0, 40, 25),      # downscale x2.4
    (64, 40, 8, 0, 48, 40),      # cover + centre crop to 48x40
    (211, 133, 90, 50, 40, 30),  # upscale, window in the middle
    (5, 3, 0, 0, 5, 3),          # extreme downscale
    (97, 30, 10, 0, 40, 30),     # vertical only, with a column crop
    (50, 61, 5, 5, 30, 40),      # horizontal only, with a crop
    (97, 61, 3, 4, 20, 10),      # identity size: a plain crop
]
index, blob = [], bytearray()
for name, flt in filters.items():
    for rw, rh, l, t, dw, dh in cases:
        r = im.resize((rw, rh), flt).crop((l, t, l + dw, t + dh))
        index.append(f"{name} {rw} {rh} {l} {t} {dw} {dh} {len(blob)}")
        blob += r.tobytes()
open(f"{out}/resample_ref.bin", "wb").write(bytes(blob))
open(f"{out}/resample_ref.txt", "w").write("\n".join(index) + "\n")
EOF
du -cb "$OUT"/* | tail -1 >&2
