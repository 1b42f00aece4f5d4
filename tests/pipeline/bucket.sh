# dfm-bucket: NeMo buckets, fixed size, diffusion-pipe ratios, frame rules, json records.
. "$DFM_TOP/tests/lib.sh"
dfm-bucket --list-buckets --preset 512p | awk '{print $2}' | tr '\n' ' ' > b
expect_eq "512p q16" "$(cat b)" "352x720 384x672 416x624 448x576 464x560 512x512 560x464 576x448 624x416 640x400 672x384 704x368 768x336 "
dfm-bucket --list-buckets --preset 256p --multiple 64 | awk '{print $2}' | tr '\n' ' ' > b
expect_eq "256p q64" "$(cat b)" "192x320 192x256 256x256 256x192 320x192 "
dfm-bucket --list-buckets --ratios log:0.5:2:7 --side 512 | awk '{print $2}' | tr '\n' ' ' > b
expect_eq "log ratios" "$(cat b)" "368x720 400x640 464x576 512x512 576x464 640x400 720x368 "

dfm-decode "$M/images" "$M/videos" 2>/dev/null > s
dfm-bucket --preset 512p s 2>err | dfm-shard --list > l
expect_grep 'read 16, written 16, skipped 0' err
# 640x480 (4:3) -> 576x448 (nearest aspect 1.2857 vs 1.3333); cover 597x448, crop left 10
expect_eq "fox bucket" "$(field 'images%2Ffox_in_snow%2Ejpg' frames.npy l)" "u1[1,448,576,3]"
j=$(field 'images%2Ffox_in_snow%2Ejpg' json l)
echo "$j" | grep -q '"bucket":{"width":576,"height":448,"frames":1,"id":7' || fail "bucket json: $j"
echo "$j" | grep -q '"crop":{"left":10,"top":0,"resized_width":597,"resized_height":448,"filter":"lanczos"' || fail "crop json: $j"
echo "$j" | grep -q '"source":"images/fox_in_snow.jpg"' || fail "decode json kept: $j"
# 4k+1: 48 frames -> 45, 30 -> 29, 33 -> 33
expect_eq "48 -> 45" "$(field 'videos%2Focean_waves%2Emp4' frames.npy l)" "u1[45,448,576,3]"
expect_eq "30 -> 29" "$(field 'videos%2Fstreet_corner%2Eavi' frames.npy l)" "u1[29,464,560,3]"
expect_eq "33 -> 33" "$(field 'videos%2Fnight_drive%2Emkv' frames.npy l)" "u1[33,384,672,3]"
# --frame-rule none keeps all; --frame-buckets skips clips shorter than every bucket
dfm-bucket --frame-rule none --size 64x64 s 2>/dev/null | dfm-shard --list > l
expect_eq "none" "$(field 'videos%2Focean_waves%2Emp4' frames.npy l)" "u1[48,64,64,3]"
dfm-bucket --frame-buckets 1,33,41 --size 64x64 s 2>err | dfm-shard --list > l
expect_eq "bucket 41" "$(field 'videos%2Focean_waves%2Emp4' frames.npy l)" "u1[41,64,64,3]"
expect_eq "bucket 33" "$(field 'videos%2Fnight_drive%2Emkv' frames.npy l)" "u1[33,64,64,3]"
expect_eq "image bucket 1" "$(field 'images%2Ftall_tree%2Epng' frames.npy l)" "u1[1,64,64,3]"
expect_grep "skipping sample 'videos%2Fsmall_square%2Emov': clip of 20 frames is too short" err
expect_grep "skipped 2" err
# every filter works and gives the bucket size
for f in lanczos bicubic bilinear area; do
  dfm-bucket --filter $f --size 96x64 s 2>/dev/null | dfm-shard --list > l
  expect_eq "filter $f" "$(field 'images%2Fwide%2Fstrip%2Ebmp' frames.npy l)" "u1[1,64,96,3]"
done
# diffusion-pipe ratios: a 1024x384 panorama (2.67) goes to the widest ratio 2.0 -> 720x368
dfm-bucket --ratios log:0.5:2:7 --side 512 s 2>/dev/null | dfm-shard --list > l
expect_eq "log pick" "$(field 'images%2Fwide%2Fpanorama%2Ewebp' frames.npy l)" "u1[1,368,720,3]"
# tar input works the same as msgpack input
dfm-shard --cat --format tar s > s.tar 2>/dev/null
dfm-bucket --size 64x64 s.tar 2>/dev/null | md5sum > h1
dfm-bucket --size 64x64 s 2>/dev/null | md5sum > h2
cmp -s h1 h2 || fail "tar and msgpack input give different output"
