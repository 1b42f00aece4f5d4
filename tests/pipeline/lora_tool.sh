# dfm-lora on the Wan transformer fixtures (tests/fixtures/wan_transformer/a): info names each
# family and who loads it; conversions between every family come back byte for byte (the fixture
# ComfyUI adapter, and the diffusers one whose scale 2 is folded); bad inputs are refused naming
# the tensor, with nothing written; exit codes 0/1/2; export-full writes a whole transformer;
# diff tells identical weights, other names, rounded and patched values, NaN and shapes apart.
# (tests/unit/test_wan_lora_convert.c checks delta W and the forward through the loader.)
. "$DFM_TOP/tests/lib.sh"
F="$DFM_TOP/tests/fixtures/wan_transformer/a"
L="$F/lora"

# --help, --version, a bad option; every option of --help in the man page
dfm-lora --help > h || fail "--help exit"
expect_grep "^usage: dfm-lora info" h
dfm-lora --version > v || fail "--version exit"
expect_grep "^dfm-lora [0-9]+\.[0-9]+\.[0-9]+" v
# code CMD... — run CMD with stderr in err, print its exit status
code() { set +e; "$@" > out 2> err; echo $?; set -e; }
expect_eq "bad option" "$(code dfm-lora --bogus info x)" 2
expect_grep "unknown option '--bogus'" err
for o in $(grep -Eo -- '--[a-z][a-z-]+' h | sort -u); do
  grep -Eq -- "^\.B[IR]? .*\\\\-\\\\-${o#--}( |\"|\$)" "$DFM_TOP/man/man1/dfm-lora.1" ||
    fail "option $o of --help is not in the man page"
done

# info on each family the fixtures hold
dfm-lora info "$L" > i1
expect_grep "^family +comfyui: original Wan names \(diffusion-pipe / ComfyUI\), prefix 'diffusion_model.', lora_A/lora_B" i1
expect_grep "^modules +20$" i1
expect_grep "^rank +4$" i1
expect_grep "^alpha +4 \(scale 1\), from adapter_config.json" i1
expect_grep "^dtype +F32$" i1
expect_grep "^parameters +5632$" i1
expect_grep "^blocks +2 \(0-1\)$" i1
expect_grep "^  self_attn.q +2 blocks \(0-1\)$" i1
expect_grep "^  ffn.2 +2 blocks \(0-1\)$" i1
expect_grep "^  diffusers +yes$" i1
expect_grep "^  ComfyUI +yes$" i1
expect_grep "^  diffusion-pipe +yes, with rank 4" i1
expect_grep "^  musubi-tuner +no: " i1
dfm-lora info "$L/diffusers" > i2
expect_grep "^family +diffusers: diffusers / PEFT names, prefix 'transformer.'" i2
expect_grep "^alpha +8 \(scale 2\), from lora_adapter_metadata" i2
expect_grep "^  diffusers +yes$" i2
expect_grep "^  ComfyUI +no: " i2
dfm-lora info "$L/lora_params.safetensors" > i3
expect_grep "^family +peft: diffusers / PEFT names, no prefix" i3
expect_grep "^alpha +4 \(scale 1\), from none in the file" i3
dfm-lora info --alpha 8 "$L/lora_params.safetensors" > i3
expect_grep "^alpha +8 \(scale 2\), from the caller" i3

# every family and back: the fixture's bytes again (F32, scale 1)
for to in comfyui diffusers peft musubi; do
  case $to in peft) x=x_$to ;; *) x=x_$to.safetensors ;; esac
  dfm-lora convert "$L" $x --to $to 2>err || { cat err; fail "convert to $to"; }
  expect_grep "wrote 20 modules to '$x' \($to\)" err
  dfm-lora info $x > i
  expect_grep "^family +$to: " i
  expect_grep "^alpha +4 \(scale 1\)" i
  dfm-lora convert $x back_$to --to comfyui 2>/dev/null
  cmp back_$to/adapter_model.safetensors "$L/adapter_model.safetensors" || fail "comfyui -> $to -> comfyui differs"
  cmp back_$to/adapter_config.json "$L/adapter_config.json" || fail "comfyui -> $to -> comfyui: adapter_config.json differs"
done
dfm-lora info x_musubi.safetensors > i
expect_grep "^alpha +4 \(scale 1\), from per-module .alpha tensors" i
expect_grep "^  musubi-tuner +yes$" i
expect_grep "^  diffusers +yes$" i
[ -f x_peft/adapter_config.json ] || fail "peft: no adapter_config.json"
grep -q '"blocks.0.attn1.to_q"' x_peft/adapter_config.json || fail "peft: target_modules are not the diffusers names"
dfm-lora info x_peft > i
expect_grep "^family +peft: diffusers / PEFT names, prefix 'base_model.model.'" i
# diffusers' scale 2 (header metadata) folded: the ComfyUI fixture, byte for byte
dfm-lora convert "$L/diffusers" from_diffusers --to diffusion-pipe 2>/dev/null
cmp from_diffusers/adapter_model.safetensors "$L/adapter_model.safetensors" || fail "diffusers -> comfyui differs"
# PEFT's raw state dict read with --alpha 8: the same
dfm-lora convert --alpha 8 "$L/lora_params.safetensors" from_raw --to comfyui 2>/dev/null
cmp from_raw/adapter_model.safetensors "$L/adapter_model.safetensors" || fail "raw --alpha 8 -> comfyui differs"
# BF16 and back through another family: BF16 bytes again
dfm-lora convert "$L" b.safetensors --to musubi --dtype BF16 2>/dev/null
dfm-lora info b.safetensors > i
expect_grep "^dtype +BF16$" i
dfm-lora convert b.safetensors b_d.safetensors --to diffusers --dtype f32 2>/dev/null
dfm-lora convert b_d.safetensors b2.safetensors --to musubi --dtype bf16 2>/dev/null
cmp b.safetensors b2.safetensors || fail "BF16 musubi -> F32 diffusers -> BF16 musubi differs"

# diff: a file against a step_N-like directory holding it (and state/): identical, summary only
mkdir -p ck/state
cp "$L/adapter_model.safetensors" ck/ && cp "$L/adapter_model.safetensors" ck/state/params.safetensors
expect_eq "diff identical" "$(code dfm-lora diff "$L/adapter_model.safetensors" ck)" 0
expect_eq "diff identical: one line" "$(lines out)" 1
expect_grep "^identical: 40 tensors compared, 40 identical; max abs diff 0, max rel diff 0; only in A 0, only in B 0; shape mismatches 0, dtype mismatches 0$" out
# another family: no name in common, 10 of each listed then a count
expect_eq "diff families" "$(code dfm-lora diff "$L/adapter_model.safetensors" x_diffusers.safetensors)" 1
expect_grep "^only in A: diffusion_model.blocks.0.cross_attn.k.lora_A.weight$" out
expect_grep "^only in A: 30 more$" out
expect_grep "^only in B: transformer.blocks.0.attn1.to_k.lora_A.weight$" out
expect_grep "^only in B: 30 more$" out
expect_eq "diff families: only-in lines" "$(grep -c '^only in' out)" 22
expect_grep "^different: 0 tensors compared, 0 identical; .*only in A 40, only in B 40; shape mismatches 0" out
# BF16 rounding: every tensor differs, by at most half a BF16 ulp (2^-8 of |a|)
dfm-lora convert "$L" bf.safetensors --to comfyui --dtype bf16 2>/dev/null
expect_eq "diff bf16" "$(code dfm-lora diff "$L/adapter_model.safetensors" bf.safetensors)" 1
expect_eq "diff bf16: lines" "$(grep -c '^diffusion_model\..*  max_abs [0-9.e-]*  max_rel [0-9.e-]*  differ [0-9]*/[0-9]*  F32 vs BF16$' out)" 40
expect_grep "^diffusion_model.blocks.0.ffn.0.lora_B.weight  \[64,4\]  max_abs .*  differ 256/256  F32 vs BF16$" out
expect_grep "^different: 40 tensors compared, 0 identical; .*only in A 0, only in B 0; shape mismatches 0, dtype mismatches 40$" out
mabs=$(sed -n 's/.* max abs diff \([^,]*\), max rel diff \([^;]*\);.*/\1/p' out)
mrel=$(sed -n 's/.* max abs diff \([^,]*\), max rel diff \([^;]*\);.*/\2/p' out)
awk -v a="$mabs" -v r="$mrel" 'BEGIN { exit !(a > 1e-4 && a < 0.01 && r > 1e-3 && r <= 0.00390625) }' ||
  fail "bf16 rounding: max abs diff '$mabs', max rel diff '$mrel'"
up=$(awk -v a="$mabs" 'BEGIN { printf "%.9g", a * 1.0001 }')
down=$(awk -v a="$mabs" 'BEGIN { printf "%.9g", a * 0.9999 }')
expect_eq "diff --tol above" "$(code dfm-lora diff "$L/adapter_model.safetensors" bf.safetensors --tol $up)" 0
expect_grep "^within tolerance: 40 tensors compared, 0 identical; max abs diff $mabs," out
expect_no_grep "beyond --tol" out
expect_eq "diff --tol below" "$(code dfm-lora diff "$L/adapter_model.safetensors" bf.safetensors --tol $down)" 1
expect_eq "diff --tol below: beyond" "$(grep -c '  beyond --tol$' out)" 1
expect_eq "diff --rel" "$(code dfm-lora diff "$L/adapter_model.safetensors" bf.safetensors --rel --tol 0.00390625 -q)" 0
expect_eq "diff -q: one line" "$(lines out)" 1
expect_eq "diff --rel below" "$(code dfm-lora diff "$L/adapter_model.safetensors" bf.safetensors --rel --tol 0.001 -q)" 1
expect_grep "^different: " out
# one value patched (the last 4 bytes of the data: set to 1.0): one tensor, one element, |1 - v|
cp "$L/adapter_model.safetensors" p.safetensors
size=$(wc -c < p.safetensors)
v=$(od -An -tf4 -j $((size - 4)) -N4 p.safetensors)
printf '\0\0\200\77' | dd of=p.safetensors bs=1 seek=$((size - 4)) conv=notrunc 2>/dev/null
expect_eq "diff patched" "$(code dfm-lora diff "$L/adapter_model.safetensors" p.safetensors)" 1
expect_eq "diff patched: lines" "$(lines out)" 2
expect_grep "^diffusion_model\..*  \[[0-9,]*\]  max_abs [0-9.e-]*  max_rel [0-9.e-]*  differ 1/[0-9]*$" out
expect_grep "^different: 40 tensors compared, 39 identical; " out
got=$(sed -n 's/.* max abs diff \([^,]*\),.*/\1/p' out)
awk -v g="$got" -v v="$v" 'BEGIN { w = 1 - v; if (w < 0) w = -w; d = g - w; if (d < 0) d = -d; exit !(w > 0 && d <= 1e-5 * w) }' ||
  fail "patched: max abs diff '$got', want |1 - $v|"
expect_eq "diff patched --tol" "$(code dfm-lora diff "$L/adapter_model.safetensors" p.safetensors --tol 2)" 0
expect_grep "^within tolerance: 40 tensors compared, 39 identical; " out
# a file that is not there is named; bad usage exits 2
expect_eq "diff missing A" "$(code dfm-lora diff nowhere ck)" 1
expect_grep "^dfm-lora: error: cannot read the weights: cannot open 'nowhere': No such file" err
expect_eq "diff missing B" "$(code dfm-lora diff ck nowhere2)" 1
expect_grep "cannot open 'nowhere2'" err
expect_eq "diff bad --tol" "$(code dfm-lora diff ck ck --tol abc)" 2
expect_grep "option '--tol' wants a number, not 'abc'" err
expect_eq "diff negative --tol" "$(code dfm-lora diff ck ck --tol -1)" 2
expect_eq "diff one argument" "$(code dfm-lora diff ck)" 2
expect_eq "diff --to" "$(code dfm-lora diff ck ck --to comfyui)" 2
expect_eq "--tol for info" "$(code dfm-lora info ck --tol 1)" 2

# an existing OUT: refused without -f (exit 1, with a hint), replaced with it
expect_eq "existing OUT" "$(code dfm-lora convert "$L" x_musubi.safetensors --to musubi)" 1
expect_grep "error: output 'x_musubi.safetensors': already exists" err
expect_grep "^hint: pass -f" err
expect_eq "-f" "$(code dfm-lora convert "$L" x_musubi.safetensors --to diffusers -f)" 0
dfm-lora info x_musubi.safetensors > i
expect_grep "^family +diffusers: " i
# into a directory that held another family: its files go, the new one is what is read
dfm-lora convert "$L" back_musubi --to diffusers -f 2>/dev/null
expect_eq "replaced directory" "$(ls back_musubi | tr '\n' ' ')" "pytorch_lora_weights.safetensors "
dfm-lora info back_musubi > i
expect_grep "^family +diffusers: " i

# usage errors: exit 2
expect_eq "no command" "$(code dfm-lora)" 2
expect_eq "unknown command" "$(code dfm-lora merge a b)" 2
expect_grep "unknown command 'merge'" err
expect_eq "no --to" "$(code dfm-lora convert "$L" y.safetensors)" 2
expect_eq "bad --to" "$(code dfm-lora convert "$L" y.safetensors --to kohya)" 2
expect_grep "'kohya': not one of" err
expect_eq "peft to a file" "$(code dfm-lora convert "$L" y.safetensors --to peft)" 2
expect_eq "bad --dtype" "$(code dfm-lora convert "$L" y.safetensors --to peft --dtype F64)" 2
expect_eq "info with two" "$(code dfm-lora info a b)" 2
[ ! -e y.safetensors ] && [ ! -e y ] || fail "a refused command wrote its OUT"

# bad inputs: exit 1, the tensor named, nothing written. st FILE NAME=VALUE...: a safetensors
# file of F32 [1, 1] tensors (VALUE one, nan; shape [$ST_SHAPE] when set)
st() {
  f=$1; shift
  h='{' off=0 sep=''
  for t in "$@"; do
    h="$h$sep\"${t%=*}\":{\"dtype\":\"F32\",\"shape\":[${ST_SHAPE:-1,1}],\"data_offsets\":[$off,$((off + 4))]}"
    off=$((off + 4)) sep=','
  done
  h="$h}"
  n=${#h}
  { printf "\\$(printf %o $((n % 256)))\\$(printf %o $((n / 256)))\\0\\0\\0\\0\\0\\0"; printf %s "$h"
    for t in "$@"; do case ${t#*=} in one) printf '\0\0\200\77' ;; nan) printf '\0\0\300\177' ;; esac; done; } > "$f"
}
A=diffusion_model.blocks.0.self_attn.q.lora_A.weight B=diffusion_model.blocks.0.self_attn.q.lora_B.weight
st good.safetensors $A=one $B=one
dfm-lora convert good.safetensors good_m.safetensors --to musubi 2>/dev/null || fail "the hand-made file"
dfm-lora info good_m.safetensors > i
expect_grep "^parameters +2$" i
# bad NAME WHY TENSORS... — convert refused naming NAME, saying WHY, no output
bad() {
  name=$1 why=$2; shift 2
  st in.safetensors "$@"
  expect_eq "$why" "$(code dfm-lora convert in.safetensors o.safetensors --to comfyui)" 1
  expect_grep "error: cannot convert the LoRA: in.safetensors: .*'$name'.*$why" err
  [ ! -e o.safetensors ] && [ ! -e o.safetensors.tmp ] || fail "$why: output written"
}
bad diffusion_model.blocks.0.self_attn.z.lora_A.weight "is not a linear of the Wan 2.1 transformer" \
  diffusion_model.blocks.0.self_attn.z.lora_A.weight=one diffusion_model.blocks.0.self_attn.z.lora_B.weight=one
bad $A "one naming family" $A=one lora_unet_blocks_0_self_attn_q.lora_up.weight=one
bad $A "has no B" $A=one
bad $B "non-finite value \(NaN" $A=one $B=nan
bad diffusion_model.blocks.0.norm3.diff "not a LoRA" $A=one $B=one diffusion_model.blocks.0.norm3.diff=one
expect_eq "missing input" "$(code dfm-lora info nowhere)" 1
expect_grep "LoRA 'nowhere': No such file" err

# diff: NaN equals NaN at the same position; NaN against a number is +inf, beyond any --tol;
# a shape that differs is named and fails
st n1.safetensors $A=nan $B=one
st n2.safetensors $A=nan $B=one
expect_eq "diff NaN = NaN" "$(code dfm-lora diff n1.safetensors n2.safetensors)" 0
expect_grep "^identical: 2 tensors compared, 2 identical; max abs diff 0," out
expect_eq "diff NaN vs 1" "$(code dfm-lora diff n1.safetensors good.safetensors --tol 1e30)" 1
expect_grep "^$A  \[1,1\]  max_abs inf  max_rel inf  differ 1/1  beyond --tol$" out
expect_grep "^different: 2 tensors compared, 1 identical; max abs diff inf, max rel diff inf;" out
ST_SHAPE=1
st s1.safetensors $A=one $B=one
unset ST_SHAPE
expect_eq "diff shapes" "$(code dfm-lora diff good.safetensors s1.safetensors --tol 1)" 1
expect_grep "^$A  shape \[1,1\] vs \[1\]$" out
expect_grep "^different: 0 tensors compared, 0 identical; .* shape mismatches 2, dtype mismatches 0$" out

# export-full: the whole transformer, original names under ComfyUI's prefix or none
dfm-lora export-full "$F/transformer" full.safetensors 2>err || { cat err; fail "export-full"; }
expect_grep "wrote 'full.safetensors' \(BF16, original Wan names under model.diffusion_model.\)" err
expect_eq "export-full is not a LoRA" "$(code dfm-lora info full.safetensors)" 1
expect_grep "tensor 'model.diffusion_model.blocks.0.cross_attn.k.bias'" err
dfm-lora export-full "$F/transformer" full_dp.safetensors --prefix none --dtype f32 --lora "$L" 2>/dev/null
expect_eq "export-full no prefix" "$(code dfm-lora info full_dp.safetensors)" 1
expect_grep "tensor 'blocks.0.cross_attn.k.bias'" err
expect_eq "export-full existing" "$(code dfm-lora export-full "$F/transformer" full.safetensors)" 1
expect_eq "export-full bad prefix" "$(code dfm-lora export-full "$F/transformer" f2.safetensors --prefix x)" 2
exit 0
