# dfm-stats: the numbers against what was written (samples and buckets from dfm-shard --list, the
# histograms' totals, tokens from json.text), every way of naming the input giving the same
# report, --json, the contact sheet (PNG size from its header; tiles equal to the samples' first
# frames at the documented places, from frames.npy or decoded from latents with --model), --check,
# a corrupt sample and a cut shard in the input, repeated keys, empty input, bad options.
. "$DFM_TOP/tests/lib.sh"

# ---- a pixel dataset: the test images and 5-frame clips in five 32-pixel buckets, three shards
{ dfm-decode -q "$M/images" "$M/videos" --frames 5 | dfm-bucket -q --max-pixels 1024 |
  dfm-shard -q -o px/train-%06d.tar --max-count 6; } 2>err || { cat err; fail "preparing px"; }
dfm-shard --list px/*.tar > list 2>/dev/null
N=$(lines list)
expect_eq "samples written" "$N" 16
NIMG=$(grep -c '"media":"image"' list)
NVID=$(grep -c '"media":"video"' list)
# the buckets dfm-bucket recorded, "WxHxF count", sorted
bucket_counts() {
  sed -n 's/.*"bucket":{"width":\([0-9]*\),"height":\([0-9]*\),"frames":\([0-9]*\).*/\1x\2x\3/p' "$1" |
    sort | uniq -c | awk '{print $2, $1}' | sort
}
bucket_counts list > want.buckets
[ "$(lines want.buckets)" -ge 3 ] || fail "want at least 3 buckets, got $(cat want.buckets)"
# the bucket lines of a report, in its order: "WxHxF count"
report_buckets() { sed -n '/^buckets:/,/^caption characters/p' "$1" | awk '$1 ~ /^[0-9]+x[0-9]+x[0-9]+$/ {print $1, $2}'; }
# the sum of the counts of a histogram section (each line's last whole number before the bar)
hist_total() {
  sed -n "/^$2:/,/^[a-z]/p" "$1" | sed 1d | grep '^  ' |
    awk '{for (i = NF; i > 0; i--) if ($i ~ /^[0-9]+$/) { s += $i; break }} END { print s + 0 }'
}

dfm-stats px > out 2>err || { cat err; fail "dfm-stats px: exit $?"; }
expect_grep "^samples: $N \($NIMG images, $NVID videos\)$" out
expect_grep "^buckets: $(lines want.buckets) " out
report_buckets out > got.order
sort got.order > got.buckets
cmp -s want.buckets got.buckets || { paste want.buckets got.buckets >&2; fail "bucket counts differ from the json"; }
# listed by frames, then area, then width; shares of the total
expect_eq "first bucket" "$(head -n 1 got.order)" "16x32x1 1"
expect_eq "last bucket" "$(tail -n 1 got.order)" "32x32x5 3"
expect_grep '^  32x32x1 +8 +50\.0%  #{40}$' out
for h in "caption characters" "caption words"; do
  expect_eq "$h total" "$(hist_total out "$h")" "$N"
done
expect_eq "duration total" "$(hist_total out 'duration (s)')" "$NVID"
expect_grep "^duration \(s\): $NVID videos, " out
expect_grep '^caption tokens: not known' out
expect_grep '^missing: caption 0 \(empty 0\), latents 16, text states 16$' out
expect_grep '^non-finite: not checked' out
expect_grep '^repeated keys: 0$' out
expect_grep 'dfm-stats: read 16, written 16, skipped 0' err

# the same report whatever names the input: a glob, index.json, the files, a stream on stdin
dfm-stats 'px/train-*.tar' > o1 2>/dev/null
dfm-stats px/index.json > o2 2>/dev/null
dfm-stats px/train-000000.tar px/train-000001.tar px/train-000002.tar > o3 2>/dev/null
dfm-shard --cat px/*.tar 2>/dev/null | dfm-stats > o4 2>/dev/null
for o in o1 o2 o3 o4; do cmp -s out $o || { diff out $o >&2; fail "$o differs"; }; done

# ---- --json: the same numbers
dfm-stats --json px > js 2>/dev/null || fail "--json: exit $?"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$N" "$NIMG" "$NVID" <<'PY' || fail "--json: $(cat js)"
import json, sys
n, ni, nv = map(int, sys.argv[1:])
j = json.load(open("js"))
want = dict(l.split() for l in open("want.buckets"))
assert j["samples"] == n and j["images"] == ni and j["videos"] == nv and j["bad"] == 0, j
assert {b["bucket"]: b["samples"] for b in j["buckets"]} == {k: int(v) for k, v in want.items()}, j["buckets"]
assert abs(sum(b["share"] for b in j["buckets"]) - 1) < 1e-9
for m, total in (("caption_chars", n), ("caption_words", n), ("duration_s", nv)):
    assert j[m]["count"] == total and sum(b["count"] for b in j[m]["bins"]) == total, (m, j[m])
    assert j[m]["bins"][0]["lo"] <= j[m]["min"] <= j[m]["median"] <= j[m]["max"] <= j[m]["bins"][-1]["hi"], j[m]
assert j["caption_tokens"] is None and j["nonfinite"] is None and j["complete"] is True
assert j["missing"] == {"caption": 0, "empty_caption": 0, "latents": n, "text": n}, j["missing"]
PY
else
  expect_grep "^\s*\"samples\":\s*$N,$" js
  expect_grep '"complete":\s*true' js
fi

# ---- the contact sheet from frames.npy
dfm-stats px --sheet sheet.png --per-bucket 2 > out 2>err || { cat err; fail "--sheet: exit $?"; }
[ -f sheet.png ] && [ ! -e sheet.png.tmp ] || fail "no sheet.png (or its .tmp left)"
# the size in the PNG header (IHDR width, height: big-endian at bytes 16..23)
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8}'; }
# the documented layout: margin 8, label band 20, gutter 4, rows in report order, tiles as big as
# the buckets here (all under 256)
W=0 H=8 Y=8 rows=0
while read -r b count; do
  w=${b%%x*} rest=${b#*x}; h=${rest%%x*}
  k=$((count < 2 ? count : 2))
  label=$(printf '%s (%s)' "$b" "$count"); lw=$(( (${#label} * 6 - 1) * 2 ))
  tw=$((k * w + (k - 1) * 4))
  [ $tw -gt $lw ] || tw=$lw
  [ $tw -gt $W ] && W=$tw
  [ $rows -gt 0 ] && H=$((H + 4))
  eval "tile_y_$rows=$((H + 20)) tile_w_$rows=$w tile_h_$rows=$h bucket_$rows=$b"
  H=$((H + 20 + h)); rows=$((rows + 1))
done < got.order
W=$((W + 16)) H=$((H + 8))
expect_eq "sheet size" "$(png_size sheet.png)" "${W}x${H}"
expect_grep "^sheet: sheet.png, $rows rows, [0-9]+ tiles, ${W}x${H} pixels$" out
# the first tile of the first and of the last row: the first sample of that bucket in stream order,
# its first frame exactly (pixels from the PNG through ffmpeg, frames.npy from the shards)
ffmpeg -nostdin -loglevel error -y -i sheet.png -f rawvideo -pix_fmt rgb24 sheet.rgb
dfm-shard --cat --format tar px/*.tar > all.tar 2>/dev/null
# first_frame KEY OUT W H — frame 0 of KEY's frames.npy (uint8 [F,H,W,3]): after the npy header
first_frame() {
  tar -xOf all.tar "$1.frames.npy" > f.npy
  hl=$(od -An -tu1 -j8 -N2 f.npy | awk '{print $1 + 256 * $2}')
  tail -c +$((11 + hl)) f.npy | head -c $(($3 * $4 * 3)) > "$2"
}
# tile X Y W H OUT — that rectangle of the sheet
tile() {
  : > "$5"
  yy=0
  while [ $yy -lt "$4" ]; do
    dd if=sheet.rgb bs=1 skip=$(( (($2 + yy) * W + $1) * 3 )) count=$(($3 * 3)) 2>/dev/null >> "$5"
    yy=$((yy + 1))
  done
}
for r in 0 $((rows - 1)); do
  eval "b=\$bucket_$r ty=\$tile_y_$r tw=\$tile_w_$r th=\$tile_h_$r"
  key=$(awk -v b="$b" '{ k = $1; if (match($0, /"bucket":[{]"width":[0-9]+,"height":[0-9]+,"frames":[0-9]+/)) {
          s = substr($0, RSTART + 18, RLENGTH - 18); gsub(/,"height":|,"frames":/, "x", s); if (s == b) { print k; exit } } }' list)
  [ -n "$key" ] || fail "no sample in bucket $b"
  first_frame "$key" want.rgb "$tw" "$th"
  tile 8 "$ty" "$tw" "$th" got.rgb
  [ "$(wc -c < got.rgb)" -eq $((tw * th * 3)) ] || fail "tile of $b: short read"
  cmp -s want.rgb got.rgb || fail "the tile of bucket $b is not the first frame of '$key'"
  [ "$(od -An -tu1 -v got.rgb | tr -s ' ' '\n' | sed '/^$/d' | sort -u | wc -l)" -gt 8 ] || fail "tile of $b looks blank"
done
# deterministic: the same input gives the same sheet
dfm-stats px --sheet sheet2.png --per-bucket 2 > /dev/null 2>&1
cmp -s sheet.png sheet2.png || fail "the sheet differs between runs"

# ---- a latent dataset from the same media: latents and text states only
latent_model model
{ dfm-decode -q "$M/images" "$M/videos" --frames 5 | dfm-bucket -q --max-pixels 1024 |
  dfm-vae-encode -q --model model | dfm-text-encode -q --model model --dtype f32 |
  dfm-shard -q -o lat/train-%06d.tar; } 2>err || { cat err; fail "preparing lat"; }
dfm-shard --list lat/*.tar > llist 2>/dev/null
grep -q 'frames.npy' llist && fail "the latent shards still have frames"
dfm-stats --check lat > out 2>err || { cat err; fail "dfm-stats lat: exit $?"; }
report_buckets out | sort > got.buckets
bucket_counts llist > want.lat
cmp -s want.lat got.buckets || fail "latent dataset: bucket counts differ: $(cat got.buckets)"
expect_eq "tokens total" "$(hist_total out 'caption tokens')" "$N"
tmin=$(grep -o '"tokens":[0-9]*' llist | cut -d: -f2 | sort -n | head -n 1)
tmax=$(grep -o '"tokens":[0-9]*' llist | cut -d: -f2 | sort -n | tail -n 1)
expect_grep "^caption tokens: $N samples, min $tmin, median [0-9.]+, max $tmax$" out
expect_grep '^missing: caption 0 \(empty 0\), latents 0, text states 0$' out
expect_grep '^non-finite: 0 samples$' out

# --sheet without --model: the stats, then an error naming the option, no sheet, exit 1
set +e
dfm-stats lat --sheet nomodel.png > out 2>err; rc=$?
set -e
expect_eq "--sheet without --model" $rc 1
expect_grep 'needs --model DIR' err
expect_grep '^samples: 16 ' out
[ ! -e nomodel.png ] && [ ! -e nomodel.png.tmp ] || fail "a sheet was written without --model"
# with --model: the first latent frame decoded, as dfm-vae-decode decodes the whole sample
dfm-stats lat --sheet lsheet.png --per-bucket 1 --model model > out 2>err || { cat err; fail "--sheet --model: exit $?"; }
[ -f lsheet.png ] || fail "no lsheet.png"
W=$(png_size lsheet.png | cut -dx -f1)
ffmpeg -nostdin -loglevel error -y -i lsheet.png -f rawvideo -pix_fmt rgb24 sheet.rgb
dfm-shard --cat lat/*.tar 2>/dev/null | dfm-vae-decode -q --model model --format tar > all.tar 2>/dev/null
eval "b=\$bucket_$((rows - 1)) th=\$tile_h_$((rows - 1)) tw=\$tile_w_$((rows - 1))"
key=$(awk -v b="$b" '{ k = $1; if (match($0, /"bucket":[{]"width":[0-9]+,"height":[0-9]+,"frames":[0-9]+/)) {
        s = substr($0, RSTART + 18, RLENGTH - 18); gsub(/,"height":|,"frames":/, "x", s); if (s == b) { print k; exit } } }' llist)
first_frame "$key" want.rgb "$tw" "$th"
ty=$(( $(png_size lsheet.png | cut -dx -f2) - 8 - th ))
tile 8 "$ty" "$tw" "$th" got.rgb
cmp -s want.rgb got.rgb || fail "the decoded tile of $b is not dfm-vae-decode's first frame of '$key'"

# ---- bad input: a corrupt sample is counted and named, the rest goes through
printf 'a broken sample' > broken.txt
printf 'not an npy file' > broken.latents.npy
tar --format=ustar -cf broken.tar broken.txt broken.latents.npy
dfm-stats px broken.tar > out 2>err || { cat err; fail "a corrupt sample failed the run"; }
expect_grep "skipping sample 'broken': latents.npy" err
expect_grep '^samples: 16 .*; 1 bad sample left out$' out
expect_grep '^  broken: latents.npy' out
expect_grep 'read 17, written 16, skipped 1' err
# a NaN in latents.npy (float16 0x7e00 first), with --check: counted and named
{ printf '\223NUMPY\001\000\166\000'
  printf "%-117s\n" "{'descr': '<f2', 'fortran_order': False, 'shape': (16, 1, 2, 2), }"
  printf '\000\176'; head -c 126 /dev/zero; } > nan.latents.npy
tar --format=ustar -cf nan.tar nan.latents.npy
dfm-stats --check lat nan.tar > out 2>/dev/null || fail "--check with a NaN: exit $?"
expect_grep '^non-finite: 1 sample$' out
expect_grep '^  nan: latents.npy: 1$' out
expect_grep '^  latent \[16,1,2,2\] +1 ' out
# a shard cut short: what was read is reported, marked incomplete, exit 1
head -c 20000 px/train-000000.tar > cut.tar
set +e
dfm-stats cut.tar > out 2>err; rc=$?
set -e
expect_eq "cut shard" $rc 1
expect_grep 'truncated' err
expect_grep '^incomplete: ' out
# the same samples twice: every key repeated
dfm-stats px/train-000000.tar px/train-000000.tar > out 2>/dev/null
expect_grep '^repeated keys: 6$' out

# ---- empty input: an empty file, an empty stream
: > empty.tar
dfm-stats empty.tar > out 2>err || fail "empty input: exit $?"
expect_grep '^samples: 0 \(0 images, 0 videos\)$' out
expect_grep '^buckets: 0 ' out
expect_grep '^caption characters: no captions$' out
dfm-shard --cat empty.tar 2>/dev/null | dfm-stats --json > js 2>/dev/null || fail "empty stream: exit $?"
expect_grep '"samples":\s*0,' js

# ---- bad usage: exit 2
for args in "--bogus" "--per-bucket 0 --sheet s.png" "--per-bucket 65 --sheet s.png" "--sheet s.jpg" \
            "--model model" "--per-bucket 2" "--device tpu --sheet s.png" "--sheet"; do
  set +e
  dfm-stats $args px > /dev/null 2>err; rc=$?
  set -e
  expect_eq "dfm-stats $args" $rc 2
  expect_grep "^dfm-stats: error: " err
done
dfm-stats --help | grep -q -- '--per-bucket K' || fail "--help"
dfm-stats --version | grep -Eq '^dfm-stats [0-9]+\.[0-9]+\.[0-9]+' || fail "--version"
dfm-stats -j 0 px > /dev/null 2>&1 || fail "-j 0 (the default) without --sheet"
set +e
dfm-stats no-such-dir > /dev/null 2>err; rc=$?
set -e
expect_eq "missing input" $rc 1
expect_grep "no-such-dir" err
