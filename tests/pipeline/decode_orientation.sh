# dfm-decode on PNGs with an eXIf chunk and WebPs with an EXIF chunk (orientations 2..8; WebP
# with and without the "Exif\0\0" prefix some writers put in front), and one of each whose EXIF is
# cut (must be read as orientation 1, the picture as stored, as for JPEG):
#   - json width/height are the displayed size (sides swapped for 5..8), exif_orientation is set;
#   - --preset 512p (the size-hint path: cover size from the header, on the displayed size) gives
#     the same json but for "scaled", and after `dfm-bucket --preset 512p` the same pixels, byte
#     for byte (no DCT scale for PNG/WebP: the same Lanczos, done earlier);
#   - with Pillow installed: the exact frames are Image.open + ImageOps.exif_transpose + RGB,
#     byte for byte (measured 0; lossless files) (else skipped).
# Display-matrix flips of videos are covered by test_video.c (FFmpeg 5.1's CLI cannot write them).
. "$DFM_TOP/tests/lib.sh"
python3 -c "import numpy" 2>/dev/null || { echo "numpy not installed"; exit 77; }
FF="ffmpeg -hide_banner -loglevel error -y -threads 2"
$FF -f lavfi -i "testsrc2=s=1200x700:r=1" -frames:v 1 base.png
$FF -f lavfi -i "testsrc2=s=1200x700:r=1" -frames:v 1 -c:v libwebp -lossless 1 base.webp
mkdir i
python3 - <<'PY'
import struct, zlib
def tiff(o, le):
    e = "<" if le else ">"
    return (b"II*\0" if le else b"MM\0*") + struct.pack(e + "IH", 8, 1) + struct.pack(e + "HHIHH", 0x112, 3, 1, o, 0) + b"\0" * 4
def png(body, dst):
    d = open("base.png", "rb").read()
    ch = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    open(dst, "wb").write(d[:33] + ch + d[33:])  # after IHDR
def webp(body, dst):
    img = open("base.webp", "rb").read()[12:]  # the VP8L chunk of the simple format
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) + (1199).to_bytes(3, "little") + (699).to_bytes(3, "little")
    ex = b"EXIF" + struct.pack("<I", len(body)) + body + b"\0" * (len(body) % 2)
    p = b"WEBP" + vp8x + img + ex
    open(dst, "wb").write(b"RIFF" + struct.pack("<I", len(p)) + p)
for o in range(2, 9):
    png(tiff(o, o % 2), f"i/png{o}.png")
    webp((b"Exif\0\0" if o % 2 else b"") + tiff(o, o % 2 == 0), f"i/webp{o}.webp")
png(tiff(6, 1)[:15], "i/pngcut.png")                 # cut inside the IFD entry
webp(b"Exif\0\0" + tiff(6, 0)[:15], "i/webpcut.webp")
PY

dfm-decode -q i > exact.s || fail "exact decode"
dfm-decode -q --preset 512p i > hint.s || fail "hinted decode"
for s in exact hint; do
  dfm-bucket -q --preset 512p $s.s > $s.b || fail "bucket $s"
  for t in s b; do dfm-shard --cat --format tar $s.$t > $s.$t.tar 2>/dev/null || fail "cat $s.$t"; done
done

python3 -W ignore::UserWarning - <<'EOF' || fail "oriented PNG/WebP"
import io, json, os, tarfile, numpy as np
def load(p):
    with tarfile.open(p) as t:
        return {m.name: t.extractfile(m).read() for m in t if m.isfile()}
ed, hd, eb, hb = (load(p) for p in ("exact.s.tar", "hint.s.tar", "exact.b.tar", "hint.b.tar"))
assert sorted(ed) == sorted(hd) and sorted(eb) == sorted(hb), "keys differ"
try:
    from PIL import Image, ImageOps
except ImportError:
    Image = None
    print("Pillow not installed: the exif_transpose comparison is skipped")
n = 0
for k in sorted(ed):
    if not k.endswith(".json"): continue
    stem = k[:-5]
    name = stem.split("%2F")[1].replace("%2E", ".")
    d = os.path.splitext(name)[0][-1]
    o = int(d) if d.isdigit() else 1
    je, jh = json.loads(ed[k]), json.loads(hd[k])
    want = (700, 1200) if o >= 5 else (1200, 700)
    assert (je["width"], je["height"]) == want, (name, je)
    assert je.get("exif_orientation", 1) == o, (name, je)
    sc = jh.pop("scaled")
    assert je == jh, (name, je, jh)
    assert (sc["width"] > sc["height"]) == (want[0] > want[1]), (name, sc)  # cover size on the displayed sides
    jbe, jbh = json.loads(eb[k]), json.loads(hb[k])
    jbh.pop("scaled", None)
    assert jbe == jbh, (name, jbe, jbh)
    assert eb[stem + ".frames.npy"] == hb[stem + ".frames.npy"], name + ": hinted pixels differ"
    if Image:
        ref = np.asarray(ImageOps.exif_transpose(Image.open("i/" + name)).convert("RGB"))
        got = np.load(io.BytesIO(ed[stem + ".frames.npy"]))[0]
        assert ref.shape == got.shape and (ref == got).all(), (name, ref.shape, got.shape)
    n += 1
    print(f"  {name:14s} orientation {o}: {want[0]}x{want[1]}, hinted {sc['width']}x{sc['height']}, same after dfm-bucket")
assert n == 16, n
EOF

# videos whose rotate tag (a display matrix) turns them by 90, 180 or 270 degrees: the frames are
# what the ffmpeg CLI shows (autorotate), byte for byte, and json.display_orientation names the
# turn as an EXIF orientation (none for the clip as stored)
$FF -f lavfi -i "testsrc2=s=320x180:r=8" -frames:v 3 -pix_fmt yuv420p -c:v libx264 -preset ultrafast v.mp4
mkdir v
cp v.mp4 v/r0.mp4
for r in 90 180 270; do $FF -i v.mp4 -c copy -metadata:s:v:0 rotate=$r v/r$r.mp4; done
for r in 0 90 180 270; do $FF -i v/r$r.mp4 -frames:v 1 -f rawvideo -pix_fmt rgb24 v/r$r.rgb; done
dfm-decode -q --frames 1 v > vid.s || fail "rotated videos"
dfm-shard --cat --format tar vid.s > vid.tar 2>/dev/null || fail "cat vid.s"
python3 - <<'EOF' || fail "rotated videos as the ffmpeg CLI shows them"
import io, json, tarfile, numpy as np
with tarfile.open("vid.tar") as t:
    d = {m.name: t.extractfile(m).read() for m in t if m.isfile()}
want = {"r0": None, "r90": 8, "r180": 3, "r270": 6}
seen = 0
for k in d:
    if not k.endswith(".json"): continue
    stem = k[:-5]
    name = stem.split("%2F")[1].split("%2E")[0]
    j = json.loads(d[k])
    assert j.get("display_orientation") == want[name], (name, j)
    got = np.load(io.BytesIO(d[stem + ".frames.npy"]))[0]
    ref = np.frombuffer(open(f"v/{name}.rgb", "rb").read(), np.uint8).reshape(got.shape)
    assert (ref == got).all(), name + ": frames differ from the ffmpeg CLI's"
    print(f"  {name:5s} {got.shape[1]}x{got.shape[0]} display_orientation {j.get('display_orientation')}: as the ffmpeg CLI shows it")
    seen += 1
assert seen == 4, seen
