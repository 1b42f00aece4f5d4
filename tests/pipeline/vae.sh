# dfm-vae-encode / dfm-vae-decode on the tiny diffusers fixture model (z_dim 16, real latent stats).
. "$DFM_TOP/tests/lib.sh"
MODEL="$DFM_TOP/tests/fixtures/wan_vae/z16"
dfm-decode --frames 5 "$M/videos/night_drive.mkv" "$M/images/fox_in_snow.jpg" 2>/dev/null \
  | dfm-bucket --size 32x16 2>/dev/null > s.mp
dfm-vae-encode --model "$MODEL" s.mp 2>err > lat.mp
expect_grep 'read 2, written 2, skipped 0' err
dfm-shard --list lat.mp > l 2>/dev/null
k=media%2Fvideos%2Fnight_drive%2Emkv
expect_eq "latents shape" "$(field $k latents.npy l)" "f2[16,2,2,4]"
expect_eq "image latents" "$(field media%2Fimages%2Ffox_in_snow%2Ejpg latents.npy l)" "f2[16,1,2,4]"
expect_eq "frames dropped" "$(field $k frames.npy l)" ""
field $k json l | grep -q '"latents":{"shape":\[16,2,2,4\],"dtype":"float16","normalized":true,"posterior":"mean"' \
  || fail "json: $(field $k json l)"
field $k json l | grep -q '"bucket":' || fail "bucket json kept"
# --out-dtype f32, --keep-frames
dfm-vae-encode --model "$MODEL" --out-dtype f32 --keep-frames s.mp 2>/dev/null | dfm-shard --list > l2
expect_eq "f32 latents" "$(field $k latents.npy l2)" "f4[16,2,2,4]"
expect_eq "kept frames" "$(field $k frames.npy l2)" "u1[5,16,32,3]"
# decode back
dfm-vae-decode --model "$MODEL" lat.mp 2>err | dfm-shard --list > l3
expect_grep 'read 2, written 2, skipped 0' err
expect_eq "decoded frames" "$(field $k frames.npy l3)" "u1[5,16,32,3]"
expect_eq "decoded image" "$(field media%2Fimages%2Ffox_in_snow%2Ejpg frames.npy l3)" "u1[1,16,32,3]"
# --sample: the same seed gives the same bytes, another seed does not; the mean differs from both
dfm-vae-encode --model "$MODEL" --sample --seed 7 s.mp 2>/dev/null | md5sum > a
dfm-vae-encode --model "$MODEL" --sample --seed 7 s.mp 2>/dev/null | md5sum > b
dfm-vae-encode --model "$MODEL" --sample --seed 8 s.mp 2>/dev/null | md5sum > c
md5sum < lat.mp > d
cmp -s a b || fail "--sample --seed is not deterministic"
! cmp -s a c || fail "different seeds gave the same latents"
! cmp -s a d || fail "--sample gave the mean"
# bf16 compute runs and stays close (checked numerically in the unit tests)
dfm-vae-encode --model "$MODEL" --dtype bf16 s.mp 2>/dev/null | dfm-shard --list > l4
expect_eq "bf16" "$(field $k latents.npy l4)" "f2[16,2,2,4]"
# rule breaks are per-sample errors naming the fix; the other samples go through
dfm-decode --frames 6 "$M/videos/night_drive.mkv" "$M/images/fox_in_snow.jpg" 2>/dev/null \
  | dfm-bucket --size 32x16 --frame-rule none 2>/dev/null | dfm-vae-encode --model "$MODEL" > o 2>err
expect_grep "skipping sample '$k': 6 frames: the Wan VAE takes 4k\+1 frames; trim with dfm-bucket --frame-rule 4k\+1" err
expect_grep 'read 2, written 1, skipped 1' err
dfm-decode "$M/images/wide/strip.bmp" 2>/dev/null | dfm-vae-encode --model "$MODEL" > o 2>err
expect_grep "200x100 frames: width and height must be multiples of 8" err
# a wrong model directory is a clear error, exit 1
set +e
dfm-vae-encode --model "$M" s.mp > o 2>err; rc=$?
set -e
expect_eq "bad model exit" $rc 1
expect_grep "cannot load the VAE" err
set +e
dfm-vae-encode s.mp > o 2>err; rc=$?
set -e
expect_eq "no model exit" $rc 2
