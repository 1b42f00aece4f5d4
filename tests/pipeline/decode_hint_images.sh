# dfm-decode --preset on images: a JPEG decodes at the smallest DCT scale (1/2, 1/4, 1/8) that
# still covers the size dfm-bucket --preset scales it to before its crop (Pillow's draft() rule),
# then every hinted image is scaled to exactly that size with dfm-bucket's Lanczos, so dfm-bucket
# only crops. Against the exact path (no hint), after `dfm-bucket --preset 512p`, over 1920x1080,
# 4032x3024 (phone), portrait, EXIF-rotated (6 and 3), odd-size, medium, small JPEGs and a PNG:
#   - the same keys and the same json (bucket, crop, every field) but for the hint's "scaled";
#   - DCT-scaled pictures within the stated bound: |hinted - exact| mean <= 2.5 levels, p99.9 <= 64,
#     max <= 96 (libjpeg's reduced IDCT + Lanczos against the full IDCT + Lanczos; measured on
#     these grainy pictures: mean 1.09-1.86, p99.9 12-49, max 26-76, the most on the 4:4:4 one);
#   - where no DCT scale applies (medium JPEG, PNG) the pixels are the exact path's, byte for byte
#     (the same resize, done in dfm-decode); a source under the cover size is never upsampled:
#     decoded exactly with no "scaled";
#   - with Pillow installed: the hinted output against Pillow's draft() + exif_transpose + LANCZOS +
#     crop: |diff| max <= 2 (measured 0: the same pixels, byte for byte, with Pillow 13's
#     libjpeg-turbo; the slack is for another libjpeg-turbo's reduced IDCT) (else skipped).
. "$DFM_TOP/tests/lib.sh"
python3 -c "import numpy" 2>/dev/null || { echo "numpy not installed"; exit 77; }
FF="ffmpeg -hide_banner -loglevel error -y -threads 2"

# gen NAME SIZE [options]: one grainy testsrc2 picture (4:2:0 JPEG unless told)
gen() { n=$1 s=$2; shift 2; $FF -f lavfi -i "testsrc2=s=$s:r=1,noise=alls=10:allf=t" -frames:v 1 -q:v 2 "$@" "$n"; }
mkdir i
gen i/fhd.jpg 1920x1080
gen i/phone.jpg 4032x3024
gen i/portrait.jpg 1080x1920
gen i/odd.jpg 1002x564 -vf scale=1001:563 -pix_fmt yuvj444p    # odd width and height, 4:4:4
gen i/medium.jpg 1000x700
gen i/small.jpg 640x360
gen i/fhd.png 1920x1080
gen land.jpg 4032x3024
gen land2.jpg 1922x1084 -vf scale=1921:1083 -pix_fmt yuvj444p  # odd, and DCT-scaled: 961x542
# EXIF orientation: an APP1 segment with one IFD0 entry (0x0112) after SOI
python3 - <<'PY'
import struct
def exif(src, dst, o):
    d = open(src, "rb").read()
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x112, 3, 1, o, 0) + b"\0\0\0\0"
    body = b"Exif\0\0" + tiff
    open(dst, "wb").write(d[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + d[2:])
exif("land.jpg", "i/rot6.jpg", 6)
exif("land2.jpg", "i/rot3.jpg", 3)
PY

dfm-decode -q i > exact.s || fail "exact decode"
dfm-decode -q --preset 512p i > hint.s || fail "hinted decode"
for s in exact hint; do
  dfm-bucket -q --preset 512p $s.s > $s.b || fail "bucket $s"
  for t in s b; do dfm-shard --cat --format tar $s.$t > $s.$t.tar 2>/dev/null || fail "cat $s.$t"; done
done

python3 - <<'EOF2' || fail "hinted vs exact"
import io, json, tarfile, numpy as np
def load(p):
    with tarfile.open(p) as t:
        return {m.name: t.extractfile(m).read() for m in t if m.isfile()}
def arr(b): return np.load(io.BytesIO(b))
ed, hd, eb, hb = (load(p) for p in ("exact.s.tar", "hint.s.tar", "exact.b.tar", "hint.b.tar"))
assert sorted(ed) == sorted(hd) and sorted(eb) == sorted(hb), "keys differ"
assert len(ed) == 9 * 3, sorted(ed)
# name: DCT scale expected (0 = not scaled at all)
dct = {"fhd.jpg": 2, "phone.jpg": 4, "portrait.jpg": 2, "odd.jpg": 1, "medium.jpg": 1, "small.jpg": 0,
       "fhd.png": 1, "rot6.jpg": 4, "rot3.jpg": 2}
seen = set()
for k in sorted(ed):
    if not k.endswith(".json"): continue
    stem = k[:-5]
    name = stem.split("%2F")[1].replace("%2E", ".")
    seen.add(name)
    je, jh = json.loads(ed[k]), json.loads(hd[k])
    fe, fh = arr(ed[stem + ".frames.npy"]), arr(hd[stem + ".frames.npy"])
    if dct[name]:
        sc = jh.pop("scaled")
        w, h = sc["width"], sc["height"]
        assert sc["hint"] == "512p" and fh.shape == (1, h, w, 3), (name, sc, fh.shape)
        assert fe.shape[1] > h or fe.shape[2] > w, (name, fe.shape)
        # the stated DCT scale is the draft() rule on the displayed size
        W, H = je["width"], je["height"]
        d = next(d for d in (8, 4, 2, 1) if W >= d * w and H >= d * h) if name.endswith(".jpg") else 1
        assert d == dct[name], (name, d, W, H, w, h)
    else:
        assert "scaled" not in jh and hd[stem + ".frames.npy"] == ed[stem + ".frames.npy"], name
    assert je == jh, (name, je, jh)          # width/height stay the source's displayed size
    jbe, jbh = json.loads(eb[k]), json.loads(hb[k])
    jbh.pop("scaled", None)
    assert jbe == jbh, (name, jbe, jbh)      # same bucket, same crop
    if dct[name] <= 1:
        assert eb[stem + ".frames.npy"] == hb[stem + ".frames.npy"], name + ": not byte-identical"
        print(f"  {name:12s} {fe.shape[2]}x{fe.shape[1]}: byte-identical after dfm-bucket")
        continue
    be, bh = arr(eb[stem + ".frames.npy"]).astype(np.int16), arr(hb[stem + ".frames.npy"]).astype(np.int16)
    assert be.shape == bh.shape, (name, be.shape, bh.shape)
    d = np.abs(be - bh)
    p999 = np.percentile(d, 99.9)
    print(f"  {name:12s} {fe.shape[2]}x{fe.shape[1]} 1/{dct[name]} -> {be.shape[2]}x{be.shape[1]}: max {d.max()} mean {d.mean():.3f} p99.9 {p999:.0f}")
    assert d.mean() <= 2.5 and p999 <= 64 and d.max() <= 96, (name, d.max(), d.mean(), p999)
    assert d.max() > 0, name                 # the DCT scale did change pixels: the test can fail
assert seen == set(dct), seen
EOF2

# Pillow's draft() + LANCZOS (what a Pillow pipeline that asks for speed does), when installed
if python3 -c "import PIL" 2>/dev/null; then
python3 - <<'EOF2' || fail "hinted vs Pillow draft"
import io, json, tarfile, numpy as np
from PIL import Image, ImageOps
with tarfile.open("hint.b.tar") as t:
    hb = {m.name: t.extractfile(m).read() for m in t if m.isfile()}
for k in sorted(hb):
    if not k.endswith(".json"): continue
    stem = k[:-5]
    path = stem.split("%2F")[0] + "/" + stem.split("%2F")[1].replace("%2E", ".")
    j = json.loads(hb[k])
    if "scaled" not in j: continue
    c, b = j["crop"], j["bucket"]
    rw, rh = c["resized_width"], c["resized_height"]
    im = Image.open(path)
    o = im.getexif().get(0x0112, 1)
    if im.format == "JPEG": im.draft("RGB", (rh, rw) if o >= 5 else (rw, rh))
    im = ImageOps.exif_transpose(im).convert("RGB").resize((rw, rh), Image.LANCZOS, reducing_gap=None)
    ref = np.asarray(im.crop((c["left"], c["top"], c["left"] + b["width"], c["top"] + b["height"]))).astype(np.int16)
    got = np.load(io.BytesIO(hb[stem + ".frames.npy"]))[0].astype(np.int16)
    assert ref.shape == got.shape, (path, ref.shape, got.shape)
    d = np.abs(ref - got)
    print(f"  {path:14s} vs Pillow draft+LANCZOS: max {d.max()} mean {d.mean():.3f}")
    assert d.max() <= 2, (path, d.max(), d.mean())
EOF2
else
  echo "Pillow not installed: the draft() comparison is skipped"
fi
