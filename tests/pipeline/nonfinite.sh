# NaN and Inf never pass a model stage silently: non-finite input (dfm-vae-decode's latents.npy, in
# float16 and float32, NaN/+Inf/-Inf at the first and the last element) and non-finite output (a
# weights file with an Inf; latents so large the decoder overflows; states past float16's range)
# are per-sample errors naming the key, the field, the count and the first index; the other
# samples go through and the summary counts the skips. Inputs are built here as tar streams of
# .npy members (printf, tar), with no Python.
. "$DFM_TOP/tests/lib.sh"
F="$DFM_TOP/tests/fixtures"
VAE="$F/wan_vae/z16"

# esc HEX... — the printf escapes (\ooo) of the bytes given as two hex digits each
esc() { for h in "$@"; do printf '\\%03o' "0x$h"; done; }
# npy FILE DESCR SHAPE N FILL_HEX [INDEX HEX]... — a .npy of N elements of DESCR ('<f2', '<f4',
# '<f8') with the tuple SHAPE ("(16, 1, 2, 3)"), every element FILL (little-endian bytes) except
# the given indices
npy() {
  file=$1 descr=$2 shape=$3 n=$4 fill=$(esc $5); shift 5
  dict="{'descr': '$descr', 'fortran_order': False, 'shape': $shape, }"
  len=$(( (10 + ${#dict} + 1 + 63) / 64 * 64 - 10 ))
  {
    printf '\223NUMPY\001\000'
    printf "$(esc "$(printf '%02x' $((len % 256)))" "$(printf '%02x' $((len / 256)))")"
    printf '%-*s\n' $((len - 1)) "$dict"
    i=0
    while [ $i -lt "$n" ]; do
      e=$fill
      set -- "$@" # the overrides, as pairs
      k=1
      while [ $k -lt $# ]; do
        eval "at=\${$k}; hx=\${$((k + 1))}"
        [ "$at" -eq $i ] && e=$(esc $hx)
        k=$((k + 2))
      done
      printf "$e"
      i=$((i + 1))
    done
  } > "$file"
}
# safetensors_poison FILE TENSOR ELEMENT HEX — overwrite element ELEMENT of F32 tensor TENSOR
safetensors_poison() {
  hl=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  offs=$(head -c $((8 + hl)) "$1" | tail -c "$hl" | grep -o "\"$2\":{[^}]*}" | grep -o 'data_offsets":\[[0-9]*' | grep -o '[0-9]*$')
  [ -n "$offs" ] || fail "no tensor $2 in $1"
  printf "$(esc $4)" | dd of="$1" bs=1 seek=$((8 + hl + offs + 4 * $3)) conv=notrunc 2>/dev/null
}

# ---- dfm-vae-decode: non-finite latents, each dtype, value and place; two good samples -------------
NAN2='00 7e' PINF2='00 7c' NINF2='00 fc' HALF2='00 38'
NAN4='00 00 c0 7f' PINF4='00 00 80 7f' NINF4='00 00 80 ff' HALF4='00 00 00 3f'
S='(16, 1, 2, 3)' N=96 LAST=95
members=
for dt in 2 4; do
  eval "half=\$HALF$dt"
  npy good$dt.latents.npy "<f$dt" "$S" $N "$half"
  members="$members good$dt.latents.npy"
  for v in NAN PINF NINF; do
    eval "bad=\$$v$dt"
    npy "$v${dt}first.latents.npy" "<f$dt" "$S" $N "$half" 0 "$bad"
    npy "$v${dt}last.latents.npy" "<f$dt" "$S" $N "$half" $LAST "$bad"
    members="$members $v${dt}first.latents.npy $v${dt}last.latents.npy"
  done
done
tar --format=ustar -cf lat.tar $members
dfm-vae-decode --model "$VAE" lat.tar > out.mp 2>err || fail "exit $?"
for dt in 2 4; do
  for v in NAN:NaN PINF:+Inf NINF:-Inf; do
    k=${v%%:*} name=${v#*:}
    expect_grep "skipping sample '$k${dt}first': latents.npy has 1 non-finite value \(first \\$name at \[0,0,0,0\]\)" err
    expect_grep "skipping sample '$k${dt}last': latents.npy has 1 non-finite value \(first \\$name at \[15,0,1,2\]\)" err
  done
done
expect_grep 'read 14, written 2, skipped 12' err
dfm-shard --list out.mp > l 2>/dev/null
expect_eq "decoded" "$(cut -f1 l | tr '\n' ' ')" "good2 good4 "
expect_eq "frames" "$(field good2 frames.npy l)" "u1[1,16,24,3]"
# --strict stops at the first (exit 1)
set +e
dfm-vae-decode --model "$VAE" --strict lat.tar > /dev/null 2>err; rc=$?
set -e
expect_eq "strict exit" $rc 1
expect_grep "NAN2first': latents.npy has 1 non-finite value" err

# ---- dfm-vae-decode: what it got when it refuses the latents --------------------------------------
npy f8.latents.npy '<f8' '(16, 3, 8, 8)' 3072 '00 00 00 00 00 00 00 00'
npy c8.latents.npy '<f4' '(8, 1, 2, 3)' 48 "$HALF4"
tar --format=ustar -cf shape.tar f8.latents.npy c8.latents.npy good2.latents.npy
dfm-vae-decode --model "$VAE" shape.tar > /dev/null 2>err
expect_grep "skipping sample 'f8': latents.npy is float64 \[16,3,8,8\]; want float16/float32 \[C,F,H,W\] with C = 16 \(the VAE's z_dim\)" err
expect_grep "skipping sample 'c8': latents.npy is float32 \[8,1,2,3\]; want" err
expect_grep 'read 3, written 1, skipped 2' err

# ---- dfm-vae-decode: finite latents so large that the decoder overflows ---------------------------
npy huge.latents.npy '<f4' "$S" $N '00 00 60 7f' # 2.98e38
tar --format=ustar -cf huge.tar huge.latents.npy good4.latents.npy
dfm-vae-decode --model "$VAE" huge.tar > /dev/null 2>err
expect_grep "skipping sample 'huge': the VAE decoder's output \[C,F,H,W\] has [0-9]+ non-finite values \(first (NaN|\+Inf|-Inf) at \[[0-9,]+\]\)" err
expect_grep 'read 2, written 1, skipped 1' err

# ---- dfm-vae-encode / -decode: a weights file with an Inf ------------------------------------------
mkdir -p vae_inf vae_big
cp "$VAE/config.json" "$VAE/diffusion_pytorch_model.safetensors" vae_inf/
cp "$VAE/config.json" "$VAE/diffusion_pytorch_model.safetensors" vae_big/
safetensors_poison vae_inf/diffusion_pytorch_model.safetensors quant_conv.bias 2 "$PINF4"
safetensors_poison vae_inf/diffusion_pytorch_model.safetensors decoder.conv_out.bias 1 "$PINF4"
safetensors_poison vae_big/diffusion_pytorch_model.safetensors quant_conv.bias 3 '00 24 74 49' # 1e6
dfm-decode --frames 5 "$M/videos/night_drive.mkv" "$M/images/fox_in_snow.jpg" 2>/dev/null \
  | dfm-bucket --size 32x16 2>/dev/null > s.mp
k=media%2Fvideos%2Fnight_drive%2Emkv
dfm-vae-encode --model vae_inf s.mp > /dev/null 2>err
expect_grep "skipping sample '$k': the VAE encoder's output \[2C \(mean, logvar\),F,H,W\] has 16 non-finite values \(first \+Inf at \[2,0,0,0\]\)" err
expect_grep 'read 2, written 0, skipped 2' err
# the clamp to [-1, 1] does not hide an Inf from the decoder
dfm-vae-decode --model vae_inf lat.tar > /dev/null 2>err
expect_grep "skipping sample 'good2': the VAE decoder's output \[C,F,H,W\] has 384 non-finite values \(first \+Inf at \[1,0,0,0\]\)" err
# finite in float32, past float16's range once stored as float16
dfm-vae-encode --model vae_big s.mp > /dev/null 2>err
expect_grep "skipping sample '$k': latents.npy as float16 has 16 non-finite values \(first \+Inf at \[3,0,0,0\]\): values past float16's range \(65504\); store float32 with --out-dtype f32" err
dfm-vae-encode --model vae_big --out-dtype f32 s.mp 2>err | dfm-shard --list > l 2>/dev/null
expect_grep 'read 2, written 2, skipped 0' err
expect_eq "f32 latents" "$(field $k latents.npy l)" "f4[16,2,2,4]"

# ---- dfm-text-encode: a weights file with an Inf; states past float16's range ----------------------
mkdir -p model/text_inf model/text_big
ln -s "$F/tokenizer/rules" model/tokenizer
for d in text_inf text_big; do cp "$F/umt5/tiny/config.json" "$F/umt5/tiny/model.safetensors" model/$d/; done
safetensors_poison model/text_inf/model.safetensors encoder.final_layer_norm.weight 5 "$PINF4"
safetensors_poison model/text_big/model.safetensors encoder.final_layer_norm.weight 5 '28 6b 6e 4e' # 1e9
dfm-decode "$M/images" 2>/dev/null > t.mp
dfm-text-encode --tokenizer model/tokenizer --text-encoder model/text_inf t.mp > /dev/null 2>err
expect_grep "skipping sample 'images%2Ffox_in_snow%2Ejpg': text.npy \(the text encoder's output\) has [0-9]+ non-finite values? \(first (\+|-)Inf at \[0,5\]\)" err
expect_grep 'read 11, written 0, skipped 11' err
dfm-text-encode --tokenizer model/tokenizer --text-encoder model/text_big t.mp > /dev/null 2>err
expect_grep "skipping sample 'images%2Ffox_in_snow%2Ejpg': text.npy as float16 has [0-9]+ non-finite values? \(first (\+|-)Inf at \[0,5\]\): values past float16's range" err
dfm-text-encode --tokenizer model/tokenizer --text-encoder model/text_big --out-dtype f32 t.mp > /dev/null 2>err
expect_grep 'read 11, written 11, skipped 0' err
