# dfm-decode's length filters (--min-frames, --min-duration, --max-duration) over clips of several
# lengths and rates, a variable-rate clip, an edit-list trim and a clip cut short (its count is
# corrected by the decode), at the boundaries; bad values; and --clean-captions (NeMo's Wan
# cleaning) on entities, white space and captions that clean to empty. Frame counts are checked
# against the ffmpeg CLI's decode and against what dfm-decode itself gives without a cap.
. "$DFM_TOP/tests/lib.sh"
FF="ffmpeg -nostdin -hide_banner -loglevel error -y -threads 1"
mkdir v img other
# clip NAME RATE FRAMES CODEC: testsrc2 at RATE fps, FRAMES frames
clip() { $FF -f lavfi -i testsrc2=s=32x24:r=$2 -frames:v $3 -c:v $4 -pix_fmt ${5:-yuv420p} "$1"; }
clip v/r16_32.mp4 16 32 libx264               # 2.0 s exactly
clip v/r16_33.mkv 16 33 libx264               # 2.0625 s
clip v/r24_48.mp4 24 48 libx264               # 2.0 s; 32 frames at 16 fps
clip v/r25_30.avi 25 30 mpeg4                 # 1.2 s
clip v/r12_20.mov 12 20 mjpeg yuvj420p        # 1.667 s
# variable rate: 30 fps for 41 frames, 15 for 50, 7.5 for 40: 131 frames over 10 s (13 fps on
# average, 10.08 s); the container says 30 fps, which would make it 4.37 s
$FF -f lavfi -i testsrc2=s=32x24:r=30:d=4.34 \
    -vf "setpts='(N+if(gt(N,40),N-40,0)+if(gt(N,90),(N-90)*2,0))/30/TB'" -fps_mode passthrough \
    -video_track_timescale 90000 -c:v libx264 -pix_fmt yuv420p v/vfr.mp4
# an edit-list trim: the header counts lead-in frames that never show
$FF -f lavfi -i testsrc2=s=32x24:r=24:d=3 -pix_fmt yuv420p -c:v libx264 -g 12 other/a.mp4
$FF -ss 0.55 -i other/a.mp4 -c copy v/trim.mp4
# cut short (a download cut at 60%): the demuxer still finds packets that do not decode
$FF -i other/a.mp4 -c copy -movflags +faststart other/fs.mp4
head -c $(($(wc -c < other/fs.mp4) * 6 / 10)) other/fs.mp4 > other/cut.mp4
$FF -f lavfi -i testsrc2=s=32x24:r=1 -frames:v 1 img/still.png

# ref CLIP: the frames the ffmpeg CLI decodes (32x24 gray = 768 bytes a frame)
ref() { $FF -i "$1" -fps_mode passthrough -f rawvideo -pix_fmt gray - 2>/dev/null | wc -c | awk '{print $1 / 768}'; }
# run [dfm-decode options] PATH...: samples' keys to keys, stderr to err; fails on a non-zero exit
run() {
  dfm-decode "$@" > s 2> err || { cat err >&2; fail "dfm-decode $* exited $?"; }
  dfm-shard --list s 2>/dev/null | cut -f1 | sed 's/%2F/\//g; s/%2E/./g' > keys
}
has() { grep -qx "$1" keys || fail "$2: '$1' missing ($(tr '\n' ' ' < keys))"; }
lacks() { ! grep -qx "$1" keys || fail "$2: '$1' not filtered"; }
# nframes CLIP [options]: the frames dfm-decode takes from CLIP with no cap
nframes() {
  c=$1; shift
  dfm-decode -q --max-frames 100000 "$@" "$c" 2>/dev/null | dfm-shard --list 2>/dev/null |
    grep -o 'frames\.npy=u1\[[0-9]*' | cut -d[ -f2
}

# 1. No filter: every clip, no "filtered" in the summary.
run v img
expect_eq "all clips" "$(lines keys)" 8
expect_no_grep 'filtered' err

# 2. Frame counts: for every clip, without and with --fps 16, --min-frames at the count dfm-decode
#    gives keeps it and one more leaves it out (the count is the clip's, at the --fps rate).
for c in v/*; do
  for fps in "" "--fps 16"; do
    n=$(nframes "$c" $fps)
    [ -n "$n" ] && [ "$n" -gt 0 ] || fail "$c $fps: no frames"
    run -q $fps --min-frames "$n" "$c"
    expect_grep 'written 1, skipped 0, .* 0 filtered \(too short: 0, too long: 0\)' err
    run -q $fps --min-frames $((n + 1)) "$c"
    expect_grep 'read 1, written 0, skipped 0, .* 1 filtered \(too short: 1, too long: 0\)' err
  done
done
# the counts themselves: the source's; floor(n * 16 / S) with --fps 16 (48 at 24 fps -> 32; the
# VFR clip by its real 13 fps: floor(131 * 16 / 13) = 161)
expect_eq "r24_48 frames" "$(nframes v/r24_48.mp4)" 48
expect_eq "r24_48 at 16 fps" "$(nframes v/r24_48.mp4 --fps 16)" 32
expect_eq "r25_30 at 16 fps" "$(nframes v/r25_30.avi --fps 16)" 19
expect_eq "r12_20 at 16 fps" "$(nframes v/r12_20.mov --fps 16)" 26
expect_eq "vfr frames" "$(nframes v/vfr.mp4)" 131
expect_eq "vfr at 16 fps" "$(nframes v/vfr.mp4 --fps 16)" 161
# the trim: what the CLI decodes, not the header's count
t=$(ref v/trim.mp4)
expect_eq "trim frames (ffmpeg CLI)" "$(nframes v/trim.mp4)" "$t"
dfm-decode -q v/trim.mp4 2>/dev/null | dfm-shard --list 2>/dev/null > l
listed=$(grep -o '"container_frames":[0-9]*' l | cut -d: -f2)
[ -n "$listed" ] && [ "$listed" -gt "$t" ] || fail "trim: header $listed, decoded $t: no edit list?"
run -q --min-frames "$listed" v/trim.mp4
expect_grep '1 filtered \(too short: 1' err

# 3. The whole folder at once, boundaries included; -v names each clip left out with its reason.
run -v --min-frames 32 v img
expect_grep 'read 8, written 6, skipped 0, .* 2 filtered \(too short: 2, too long: 0\)$' err
lacks v/r25_30.avi "min-frames 32"; lacks v/r12_20.mov "min-frames 32"
has v/r16_32.mp4 "exactly 32 frames"; has img/still.png "image"
expect_grep "info: filtered 'v/r25_30.avi': 30 frames, fewer than --min-frames 32$" err
expect_grep "info: filtered 'v/r12_20.mov': 20 frames, fewer than --min-frames 32$" err
expect_eq "-v lines" "$(grep -c 'info: filtered' err)" 2
run --fps 16 --min-frames 33 v
lacks v/r24_48.mp4 "48 frames are 32 at 16 fps"; lacks v/r16_32.mp4 "32 at 16 fps"; has v/r16_33.mkv "33 at 16 fps"
expect_no_grep 'info: filtered' err  # only with -v
run -v --fps 16 --min-frames 33 v/r24_48.mp4
expect_grep "filtered 'v/r24_48.mp4': 32 frames at --fps 16 \(48 at 24 fps\), fewer than --min-frames 33$" err
# durations: 2.0 s is not over --max-duration 2 nor under --min-duration 2
run -v --max-duration 2 v img
has v/r16_32.mp4 "2.0 s"; has v/r24_48.mp4 "2.0 s"; has img/still.png "image"
lacks v/r16_33.mkv "2.0625 s"; lacks v/vfr.mp4 "10.08 s"; lacks v/trim.mp4 "over 2 s"
expect_grep 'written 5, skipped 0, .* 3 filtered \(too short: 0, too long: 3\)$' err
expect_grep "filtered 'v/r16_33.mkv': 2.0625 s \(33 frames at 16 fps\), longer than --max-duration 2$" err
run --min-duration 2 v
has v/r16_32.mp4 "2.0 s"; lacks v/r25_30.avi "1.2 s"; lacks v/r12_20.mov "1.67 s"
expect_grep '2 filtered \(too short: 2, too long: 0\)' err
# the VFR clip lasts 10.08 s by its timestamps (131 frames at the container's 30 fps would be 4.37)
run --min-duration 5 --max-duration 10.1 v img
expect_eq "min-duration 5" "$(tr '\n' ' ' < keys)" "v/vfr.mp4 img/still.png "
run --max-duration 10.07 v/vfr.mp4
expect_grep '1 filtered \(too short: 0, too long: 1\)' err
# a filter leaves the clip whole: --frames, --clip and --mode choose from what passes
run --min-frames 32 --frames 5 --clip begin v/r16_32.mp4
dfm-shard --list s 2>/dev/null | grep -q 'frames\.npy=u1\[5,' || fail "--frames after the filter"
run --min-frames 31 --mode frames --frames 3 v/r25_30.avi v/r16_32.mp4
expect_eq "frames mode" "$(lines keys)" 3
expect_grep '1 filtered \(too short: 1' err
# not a bad file: --strict goes on, -q keeps the summary
run -q --strict --min-frames 1000 --max-duration 1 v img
expect_grep 'read 8, written 1, skipped 0, .* 7 filtered \(too short: 7, too long: 0\)$' err

# 4. Cut short: the container lists more frames than decode. Judged first on the listed count,
#    then again on the decoded one.
d=$(ref other/cut.mp4)
[ "$d" -gt 0 ] && [ "$d" -lt 72 ] || fail "cut clip decodes $d frames"
expect_eq "cut frames" "$(nframes other/cut.mp4)" "$d"
run -q --min-frames "$d" other/cut.mp4
expect_grep 'written 1, skipped 0' err
run -v --min-frames $((d + 1)) other/cut.mp4
expect_grep "filtered 'other/cut.mp4': $d frames, fewer than --min-frames $((d + 1))$" err
expect_grep 'read 1, written 0, skipped 0, .* 1 filtered' err

# 5. Bad values: usage errors (exit 2) naming the option.
bad() {
  rc=0
  dfm-decode "$@" v > /dev/null 2> e || rc=$?
  expect_eq "exit of $*" "$rc" 2
  expect_grep "$1" e
}
bad --min-frames abc; bad --min-frames -1; bad --min-frames 1.5
bad --max-duration 0; bad --max-duration -2; bad --max-duration nan; bad --max-duration inf
bad --min-duration x; bad --min-duration -1
rc=0; dfm-decode --min-duration 3 --max-duration 2 v > /dev/null 2> e || rc=$?
expect_eq "min above max" "$rc" 2
expect_grep '--min-duration 3 is above --max-duration 2' e

# 6. --clean-captions: html.unescape twice, str.isspace() runs -> one space, strip (expected
#    values printed by Python's html/re); a caption that cleans to "" is written "", with a warning.
i=0
cap() { i=$((i + 1)); cp img/still.png img/c$i.png; printf "$1" > img/c$i.txt; eval "want$i=\$2"; }
cap 'Tom &amp;amp; Jerry' 'Tom & Jerry'
cap '&lt;b&gt;bold&lt;/b&gt; text' '<b>bold</b> text'
cap 'it&#39;s &#233;t&#xE9; &#8212; ok' "it's été — ok"
cap 'a\tb\n\nc\302\240d  e\342\200\203f\035g' 'a b c d e f g'
cap '  lead and trail  \n' 'lead and trail'
cap '&nbsp;' ''
cap '&#32;&#9;' ''
cap '&amp;amp;amp;lt;' '&amp;lt;'
cp img/still.png 'img/Rock_&amp;_Roll.png'
printf '{"m.png": ["one &amp;amp; two", "&nbsp;&nbsp;"]}' > img/captions.json
cp img/still.png img/m.png
dfm-decode --clean-captions --format tar img > s.tar 2> err || { cat err >&2; fail "clean-captions run"; }
txt() { tar -xOf s.tar "img%2F$1%2Epng${2:-}.txt"; }
for k in 1 2 3 4 5 6 7 8; do
  eval "want=\$want$k"
  expect_eq "caption c$k" "$(txt c$k)" "$want"
done
expect_eq "file-name caption" "$(txt 'Rock_%26amp%3B_Roll')" "Rock & Roll"
expect_eq "captions.json 0" "$(txt m)" "one & two"
expect_eq "captions.json 1" "$(txt m @c1)" ""
expect_grep "warning: 'img/c6.png': its caption \(from txt\) is empty after --clean-captions" err
expect_grep "warning: 'img/m.png': 1 of its 2 captions \(from captions.json\) are empty" err
expect_eq "empty-caption warnings" "$(grep -c 'empty after --clean-captions' err)" 3
# without the option the text stays as written (trimmed, ASCII white space collapsed)
dfm-decode --format tar img > s.tar 2> /dev/null
expect_eq "uncleaned" "$(txt c1)" 'Tom &amp;amp; Jerry'
expect_eq "uncleaned nbsp" "$(txt c6)" '&nbsp;'
