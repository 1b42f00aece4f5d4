# dfm-decode on videos: containers, frame selection (--frames, --clip, --fps, --mode frames).
. "$DFM_TOP/tests/lib.sh"
V="$M/videos"
dfm-decode "$V" 2>err | dfm-shard --list > list
expect_grep 'read 5, written 5, skipped 0' err
expect_eq "mp4 all frames" "$(field 'videos%2Focean_waves%2Emp4' frames.npy list)" "u1[48,240,320,3]"
expect_eq "mp4 caption" "$(field 'videos%2Focean_waves%2Emp4' txt list)" "waves rolling onto a beach"
expect_eq "webm" "$(field 'videos%2Fcity_timelapse%2Ewebm' frames.npy list)" "u1[45,144,256,3]"
expect_eq "avi" "$(field 'videos%2Fstreet_corner%2Eavi' frames.npy list)" "u1[30,144,176,3]"
expect_eq "mkv" "$(field 'videos%2Fnight_drive%2Emkv' frames.npy list)" "u1[33,108,192,3]"
expect_eq "mov" "$(field 'videos%2Fsmall_square%2Emov' frames.npy list)" "u1[20,160,160,3]"
expect_eq "mov caption (json sidecar)" "$(field 'videos%2Fsmall_square%2Emov' txt list)" "a square clip"
j=$(field 'videos%2Focean_waves%2Emp4' json list)
echo "$j" | grep -q '"source_frames":48' || fail "source_frames: $j"
echo "$j" | grep -q '"source_fps":24' || fail "source_fps: $j"
echo "$j" | grep -q '"codec":"h264"' || fail "codec: $j"
# --frames spread: trunc(linspace(0, 47, 5)) = 0 11 23 35 47
dfm-decode --frames 5 "$V/ocean_waves.mp4" 2>/dev/null | dfm-shard --list > l
field 'media%2Fvideos%2Focean_waves%2Emp4' json l | grep -q '"frame_indices":\[0,11,23,35,47\]' || fail "spread: $(cat l)"
# --clip begin / middle
dfm-decode --frames 5 --clip begin "$V/ocean_waves.mp4" 2>/dev/null | dfm-shard --list > l
field 'media%2Fvideos%2Focean_waves%2Emp4' json l | grep -q '"frame_indices":\[0,1,2,3,4\]' || fail "begin: $(cat l)"
dfm-decode --frames 4 --clip middle "$V/ocean_waves.mp4" 2>/dev/null | dfm-shard --list > l
field 'media%2Fvideos%2Focean_waves%2Emp4' json l | grep -q '"frame_indices":\[22,23,24,25\]' || fail "middle: $(cat l)"
# --fps 16 on a 24 fps clip of 48 frames: 32 frames at trunc(linspace(0,47,32)).
dfm-decode --fps 16 "$V/ocean_waves.mp4" 2>/dev/null | dfm-shard --list > l
expect_eq "fps 16" "$(field 'media%2Fvideos%2Focean_waves%2Emp4' frames.npy l)" "u1[32,240,320,3]"
field 'media%2Fvideos%2Focean_waves%2Emp4' json l | grep -q '"fps":16' || fail "fps: $(cat l)"
# --max-frames caps the default
dfm-decode --max-frames 9 "$V/ocean_waves.mp4" 2>/dev/null | dfm-shard --list > l
expect_eq "max-frames" "$(field 'media%2Fvideos%2Focean_waves%2Emp4' frames.npy l)" "u1[9,240,320,3]"
# --mode frames: one sample per frame, keyed @f<index>
dfm-decode --mode frames --frames 3 "$V/ocean_waves.mp4" 2>/dev/null | dfm-shard --list > l
expect_eq "frames mode keys" "$(cut -f1 l | tr '\n' ' ')" "media%2Fvideos%2Focean_waves%2Emp4@f0 media%2Fvideos%2Focean_waves%2Emp4@f23 media%2Fvideos%2Focean_waves%2Emp4@f47 "
expect_eq "frames mode shape" "$(field 'media%2Fvideos%2Focean_waves%2Emp4@f23' frames.npy l)" "u1[1,240,320,3]"
field 'media%2Fvideos%2Focean_waves%2Emp4@f23' json l | grep -q '"frame_index":23' || fail "frame_index: $(cat l)"
