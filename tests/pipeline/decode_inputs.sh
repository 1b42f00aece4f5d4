# dfm-decode on the inputs users have lying around: damaged JPEGs, FIFOs and sockets with media
# names, empty directories, NUL-separated path lists, names that are not UTF-8, tiny images.
. "$DFM_TOP/tests/lib.sh"
J="$M/images/fox_in_snow.jpg"
size=$(wc -c < "$J")

# A JPEG cut to a third with an end marker appended decodes to two thirds grey: skipped with
# libjpeg's warning, kept with --accept-damaged (json says why).
mkdir d
head -c $((size / 3)) "$J" > d/third.jpg
printf '\377\331' >> d/third.jpg
head -c $((size * 2 / 3)) "$J" > d/cut.jpg
cp "$J" d/good.jpg
dfm-decode d > out 2> err
expect_grep "skipping 'd/third.jpg': jpeg: damaged data.*libjpeg: Corrupt JPEG data: premature end of data segment" err
expect_grep "skipping 'd/cut.jpg': jpeg: damaged data.*Premature end of JPEG file" err
expect_grep 'read 3, written 1, skipped 2' err
dfm-decode --accept-damaged d 2> err | dfm-shard --list > l 2>/dev/null
expect_grep 'read 3, written 3, skipped 0' err
field 'd%2Fthird%2Ejpg' json l | grep -q '"decode_warning":"Corrupt JPEG data: premature end of data segment"' \
  || fail "decode_warning: $(field 'd%2Fthird%2Ejpg' json l)"

# A FIFO named like media is never opened (it would block): named with the reason, in a directory
# and as an argument; the other files go through.
mkdir f
cp "$J" f/a.jpg
mkfifo f/pipe.jpg f/clip.mp4
dfm-decode f > out 2> err
expect_grep "warning: skipping 'f/clip.mp4': a FIFO, not a regular file" err
expect_grep "warning: skipping 'f/pipe.jpg': a FIFO, not a regular file" err
expect_grep 'read 1, written 1, skipped 0' err
set +e
dfm-decode f/pipe.jpg > out 2> err; rc=$?
set -e
expect_eq "fifo argument exit" $rc 0
expect_grep "error: skipping 'f/pipe.jpg': a FIFO, not a regular file; not opened" err
expect_grep 'read 1, written 0, skipped 1' err

# Nothing to decode says so.
mkdir empty
dfm-decode empty > out 2> err
expect_grep "warning: no media found in 'empty'" err
expect_grep 'read 0, written 0, skipped 0' err
[ ! -s out ] || [ "$(dfm-shard --list out 2>/dev/null | wc -l)" -eq 0 ] || fail "samples from an empty directory"

# -0: NUL-separated paths (find -print0), names with spaces and newlines.
mkdir n
cp "$J" "n/with space.jpg"
cp "$J" "n/new
line.jpg"
find n -name '*.jpg' -print0 | dfm-decode -0 - 2> err | dfm-shard --list > l 2>/dev/null
expect_grep 'read 2, written 2, skipped 0' err
expect_eq "-0 keys" "$(cut -f1 l | sort | tr '\n' ' ')" "n%2Fnew%0Aline%2Ejpg n%2Fwith%20space%2Ejpg "

# A name that is not valid UTF-8 (Latin-1 "café.jpg"): json.source is readable text, source_bytes
# gives the exact bytes back (urllib.parse.unquote_to_bytes), the caption is valid UTF-8.
mkdir u
cp "$J" "$(printf 'u/caf\351.jpg')"
dfm-decode u 2> err | dfm-shard --list > l 2>/dev/null
expect_grep 'written 1' err
j=$(field 'u%2Fcaf%E9%2Ejpg' json l)
echo "$j" | grep -q '"source_bytes":"u%2Fcaf%E9%2Ejpg"' || fail "source_bytes: $j"
echo "$j" | grep -q '"source":"u/caf' || fail "source: $j"

# --min-size: a 1x1 image is left out instead of being blown up to a bucket. A filter, not an
# error: counted as filtered (too small), named with -v, never a --strict stop; with the length
# filters the summary has all three counts.
mkdir t
ffmpeg -hide_banner -loglevel error -f lavfi -i color=c=red:s=16x16:d=1 -vf scale=1:1 -frames:v 1 t/dot.png
ffmpeg -hide_banner -loglevel error -f lavfi -i color=c=red:s=64x16:d=1 -vf scale=64:1 -frames:v 1 t/line.png
cp "$J" t/big.jpg
dfm-decode --min-size 32 t > out 2> err
expect_grep 'read 3, written 1, skipped 0, .* 2 filtered \(too small: 2\)$' err
expect_no_grep "t/dot.png|t/line.png" err
dfm-decode -v --strict --min-size 32 t > out 2> err || fail "--strict stopped at a filtered file"
expect_grep "filtered 't/dot.png': 1x1 is smaller than --min-size 32" err
expect_grep "filtered 't/line.png': 64x1 is smaller than --min-size 32" err
dfm-decode --min-size 32 --preset 256p t > out 2> err  # the size hint path: the same filter
expect_grep 'written 1, skipped 0, .* 2 filtered \(too small: 2\)$' err
dfm-decode --min-size 32 "$M/videos/small_square.mov" > out 2> err
expect_grep 'written 1' err
dfm-decode -v --min-size 1000 --min-frames 2 "$M/videos/small_square.mov" t/big.jpg > out 2> err
expect_grep "smaller than --min-size 1000" err
expect_grep 'read 2, written 0, skipped 0, .* 2 filtered \(too small: 2, too short: 0, too long: 0\)$' err

# Zero-byte and index-less videos say what is wrong, naming the path once.
: > d/zero.mp4
printf '\000\000\000\030ftypisom\000\000\002\000isomiso2\000\000\000\010mdat' > d/nomoov.mp4
dfm-decode d/zero.mp4 d/nomoov.mp4 > out 2> err
expect_grep "skipping 'd/zero.mp4': empty file$" err
expect_grep "skipping 'd/nomoov.mp4': no 'moov' box" err
[ "$(grep -c 'zero.mp4' err)" -eq 1 ] && ! grep -q "nomoov.mp4.*nomoov.mp4" err || fail "a path twice: $(cat err)"
