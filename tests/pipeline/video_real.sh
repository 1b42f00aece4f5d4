# Video the way users have it, against the ffmpeg CLI as the reference (its rgb24 conversion is
# what OpenCV and PyAV give too): every width and pixel format converts byte for byte (no write
# past a row, no garbage in the last columns; run under ASan by `make test SAN=1`, and under
# valgrind here when it is installed); a clip trimmed with an edit list, cut short, or with
# damaged packets keeps exactly the frames that decode (and the same ones whatever -j); a
# variable-frame-rate clip is resampled by presentation time and says its real rate.
. "$DFM_TOP/tests/lib.sh"
FF="ffmpeg -hide_banner -loglevel error -y -threads 1"

# body FILE.npy: the pixel bytes after the npy header
body() { hl=$(od -An -tu1 -j8 -N2 "$1" | awk '{print 10 + $1 + 256 * $2}'); tail -c +$((hl + 1)) "$1"; }
# frames CLIP [dfm-decode options]: decode CLIP, write its frames' bytes to got.rgb and its json to got.json
frames() {
  clip=$1; shift
  dfm-decode -q "$@" "$clip" > s 2> err || { cat err >&2; fail "dfm-decode $* $clip exited $?"; }
  dfm-shard --cat --format tar s 2>/dev/null | tar -xO --wildcards '*.frames.npy' > got.npy
  body got.npy > got.rgb
  dfm-shard --list s 2>/dev/null | awk -F '\t' '{ for (i = 2; i <= NF; i++) if (index($i, "json=") == 1) print substr($i, 6) }' > got.json
}
# same LABEL CLIP [ffmpeg decode options]: dfm-decode's frames are the CLI's rgb24 frames, byte for byte
same() {
  label=$1 clip=$2; shift 2
  $FF "$@" -i "$clip" -fps_mode passthrough -f rawvideo -pix_fmt rgb24 ref.rgb
  frames "$clip"
  cmp -s got.rgb ref.rgb || fail "$label: frames differ from the ffmpeg CLI ($(wc -c < got.rgb) vs $(wc -c < ref.rgb) bytes)"
}

# 1. Widths and pixel formats. The first three are the sizes that overflowed or left garbage in
#    the right-hand columns (libswscale's SIMD path writes whole blocks of pixels).
for s in 540x960 854x480 450x300; do
  $FF -f lavfi -i testsrc2=s=$s:r=10:d=0.2 -pix_fmt yuv420p -c:v libx264 w$s.mp4
  same "yuv420p $s" w$s.mp4
done
n=0
for spec in "yuv420p libx264 mp4 even" "yuv422p libx264 mp4 even" "yuv444p libx264 mp4 any" \
            "yuvj420p mjpeg avi even" "yuv420p10le libx264 mkv even" "yuv420p libvpx-vp9 webm even" \
            "yuv420p mpeg4 avi even" "gray ffv1 mkv any" "gbrp ffv1 mkv any" "yuva420p ffv1 mkv any" \
            "yuv420p ffv1 mkv any" "bgr0 ffv1 mkv any" "rgb24 libx264rgb mkv any" "nv12 rawvideo avi even" \
            "yuyv422 rawvideo avi even"; do
  set -- $spec
  pf=$1 codec=$2 ext=$3 widths="34 94 322"
  [ "$4" = any ] && widths="33 94 131"
  for w in $widths; do
    clip=p_${pf}_$w.$ext
    $FF -f lavfi -i testsrc2=s=${w}x18:r=10:d=0.2 -pix_fmt $pf -c:v $codec $clip 2>/dev/null || continue
    same "$pf/$codec ${w}x18" $clip
    n=$((n + 1))
  done
done
[ $n -ge 30 ] || fail "only $n format/width cases could be encoded here"

# valgrind on the size that overflowed (when installed; not on the ASan build, which checks it)
case "$(command -v dfm-decode)" in
  *-san/*) ;;
  *) if command -v valgrind > /dev/null; then
       valgrind -q --error-exitcode=99 dfm-decode -q w540x960.mp4 > /dev/null 2> vg || { cat vg >&2; fail "valgrind found errors"; }
     fi ;;
esac

# 2. Trimmed, cut and damaged clips: the frames that decode, as the CLI decodes them on one thread.
$FF -f lavfi -i testsrc2=s=320x240:r=24:d=3 -pix_fmt yuv420p -c:v libx264 -g 12 a.mp4
$FF -ss 0.55 -i a.mp4 -c copy trim.mp4                  # edit list: lead-in packets discarded
same "edit-list trim" trim.mp4
# the header counts the discarded lead-in too; json says both
listed=$(grep -o '"container_frames":[0-9]*' got.json | cut -d: -f2)
frames_n=$(grep -o '"source_frames":[0-9]*' got.json | cut -d: -f2)
[ -n "$listed" ] && [ "$frames_n" -lt "$listed" ] && [ "$frames_n" -gt 50 ] || fail "trim: $(cat got.json)"
$FF -i a.mp4 -c copy -movflags +faststart fs.mp4
head -c $(($(wc -c < fs.mp4) * 6 / 10)) fs.mp4 > cut.mp4   # a download cut short
same "cut short" cut.mp4
# damaged packets: 3000 bytes of the media data overwritten. Concealment depends on the decoder's
# thread count, so dfm decodes a damaged clip on one thread: -j 1 and -j 2 give the same frames.
size=$(wc -c < a.mp4)
cp a.mp4 dmg.mp4
head -c 3000 /dev/urandom | dd of=dmg.mp4 bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
same "damaged packets" dmg.mp4
cp got.rgb dmg1.rgb
frames dmg.mp4 -j 2
cmp -s got.rgb dmg1.rgb || fail "damaged clip: -j 1 and -j 2 differ"

# 3. Variable frame rate: 30 fps for 41 frames, then 15 fps for 50, then 7.5 fps for 40 (131 frames,
#    the last at 10 s: 13 fps on average). Resampled to 15 fps by time, the first part keeps every other frame, the
#    second every frame, the last each frame twice; the rate and duration in json agree.
$FF -f lavfi -i testsrc2=s=64x48:r=30:d=4.34 \
    -vf "setpts='(N+if(gt(N,40),N-40,0)+if(gt(N,90),(N-90)*2,0))/30/TB'" -fps_mode passthrough \
    -video_track_timescale 90000 -c:v libx264 -pix_fmt yuv420p vfr.mp4
frames vfr.mp4 --fps 15 --max-frames 1000
grep -q '"vfr":true' got.json || fail "vfr not detected: $(cat got.json)"
grep -q '"container_fps":30' got.json || fail "container_fps: $(cat got.json)"
idx=$(grep -o '"frame_indices":\[[0-9,]*' got.json | cut -d[ -f2)
case "$idx" in 0,2,4,6,8,10,12,14,16,18,20,22,24,26,28,30,32,34,36,38,40,41,42,43,*) ;; *) fail "vfr head: $idx" ;; esac
case "$idx" in *,89,90,90,91,91,92,92,*) ;; *) fail "vfr tail: $idx" ;; esac
awk -v j="$(cat got.json)" 'BEGIN {
  match(j, /"source_fps":[0-9.e+-]*/); fps = substr(j, RSTART + 13, RLENGTH - 13)
  match(j, /"duration":[0-9.e+-]*/); d = substr(j, RSTART + 11, RLENGTH - 11)
  match(j, /"source_frames":[0-9]*/); n = substr(j, RSTART + 16, RLENGTH - 16)
  if (n != 131 || fps < 12.999 || fps > 13.001 || (n / fps - d) > 1e-6 || (d - n / fps) > 1e-6) {
    print "vfr: source_frames " n ", source_fps " fps ", duration " d > "/dev/stderr"; exit 1 } }' \
  || fail "vfr rate/duration disagree"
