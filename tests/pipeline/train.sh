# dfm-train end to end on latents made here (the demo's chain on the generated images: dfm-decode
# | dfm-bucket --size 32x32 | dfm-vae-encode | dfm-text-encode with the tiny VAE, tokenizer and
# UMT5 fixtures, then dfm-shard) and the small Wan-architecture transformer of
# tests/fixtures/wan_transformer_demo (text_dim 64 = the tiny UMT5's):
#   1. config and usage errors exit 2 naming the key and the file line; --help, --version,
#      --help-config, --print-config
#   2. a LoRA run: the run directory (step_N with one adapter .safetensors, LATEST, state/,
#      keep_last pruning, TensorBoard events, the summary line); dfm-lora reads the adapter
#   3. a full run: step_N is a diffusers transformer directory
#   4. exact resume: stopped by --stop-after, killed by SIGKILL, stopped by SIGTERM (exit 143),
#      each resumed to the end: the final weights byte for byte, the per-step losses of the
#      progress lines and of TensorBoard (train/loss, train/grad_norm, bit for bit) equal the
#      uninterrupted run's
#   5. --resume with a changed setting warns naming it; --resume with nothing to resume fails;
#      a fresh start in a run directory is refused with a hint about --resume
#   6. bad samples (NaN latents, a truncated latents.npy) are reported with their keys, training
#      completes
#   7. determinism: the same config twice, and 1 vs 2 threads, give the same bytes
#   8. every option of --help and every key of --help-config is in the man page
# About 15 s on 2 busy cores (most of it the four 100-step runs of 4 and 7).
. "$DFM_TOP/tests/lib.sh"
FX="$DFM_TOP/tests/fixtures"
MAN="$DFM_TOP/man/man1/dfm-train.1"

# code CMD... — run CMD with stdout in out and stderr in err, print its exit status
code() { set +e; "$@" > out 2> err; echo $?; set -e; }
# losses FILE... — the "step N/M  loss X" part of the progress lines
losses() { sed -n 's/^dfm-train: info: \(step [0-9]*\/[0-9]*  loss [^ ]*\) .*/\1/p' "$@"; }
# latest DIR — the step LATEST names, as dfm-train --resume reads it: the symlink's target first,
# then LATEST.txt (a run killed between writing the two leaves them a checkpoint apart)
latest() {
  { readlink "$1/LATEST" 2> /dev/null || cat "$1/LATEST.txt"; } | sed -n 's/^step_\([0-9]*\)$/\1/p'
}
# tb_scalars TAG FILE... — "STEP HEX" for each simple_value scalar TAG in TensorBoard event files
# (TFRecords of tensorboard.Event protos, read here with od and awk: no Python needed), in file
# order; HEX is the float's 4 bytes as stored, so equal means bit-equal. A truncated last record
# (a killed writer) is ignored.
tb_scalars() {
  want=$1; shift
  for f in "$@"; do od -An -v -tu1 "$f" | awk -v want="$want" '
    { for (i = 1; i <= NF; i++) b[n++] = $i + 0 }
    function varint(   v, m) { v = 0; m = 1; while (b[p] >= 128) { v += (b[p++] - 128) * m; m *= 128 } v += b[p++] * m; return v }
    function skip(wt) { if (wt == 0) varint(); else if (wt == 1) p += 8; else if (wt == 5) p += 4; else if (wt == 2) p += varint(); else p = 1e18 }
    END {
      for (r = 0; r + 12 <= n; r += 12 + len + 4) {
        len = 0; for (k = 7; k >= 0; k--) len = len * 256 + b[r + k]
        if (r + 12 + len + 4 > n) break
        p = r + 12; end = p + len; step = 0; no = 0
        while (p < end) {
          key = varint()
          if (key == 16) step = varint()                    # Event.step
          else if (key == 42) {                             # Event.summary
            send = varint(); send += p
            while (p < send) {
              key = varint()
              if (key != 10) { skip(key % 8); continue }    # Summary.value
              vend = varint(); vend += p; tag = ""; val = ""
              while (p < vend) {
                key = varint()
                if (key == 10) { l = varint(); for (k = 0; k < l; k++) tag = tag sprintf("%c", b[p + k]); p += l }
                else if (key == 21) { val = sprintf("%02x%02x%02x%02x", b[p], b[p + 1], b[p + 2], b[p + 3]); p += 4 }
                else skip(key % 8)
              }
              if (tag == want && val != "") out[++no] = val
            }
          } else skip(key % 8)
        }
        for (k = 1; k <= no; k++) print step, out[k]
      }
    }'
  done
}
# tb_run DIR — train/loss and train/grad_norm of every events file in DIR, sorted by step (a
# resumed run has two files)
tb_run() {
  { tb_scalars train/loss "$1"/events.out.tfevents.* | sed 's/^/loss /'
    tb_scalars train/grad_norm "$1"/events.out.tfevents.* | sed 's/^/grad /'; } | sort -s -k1,1 -k2,2n
}

# ---- inputs: 11 samples of latents [16,1,4,4] and text states [L,64] in 4 shards ----------
latent_shards 0/1 shards/train-%06d.tar --max-count 3
dfm-shard --list shards/*.tar > list 2>/dev/null
expect_eq "samples with latents.npy=f2[16,1,4,4] in the shards" "$(grep -c 'latents\.npy=f2\[16,1,4,4\]' list)" 11
expect_eq "samples with text.npy in the shards" "$(grep -c 'text\.npy=f2\[[0-9]*,64\]' list)" 11

cat > c.yaml <<EOF
seed: 7
model:
  path: $FX/wan_transformer_demo
  text_len: 32
data:
  shards: shards/
  batch_size: 2
train:
  max_steps: 8
  threads: 2
optim:
  lr: 1e-3
lora:
  rank: 4
checkpoint:
  dir: run
  every: 2
  keep_last: 2
logging:
  every: 1
EOF
# the resume runs: 100 steps, a checkpoint every 10 (11 samples make 5 batches of 2: a new epoch
# every 5 steps)
sed -e 's/^  max_steps: 8$/  max_steps: 100/' -e 's/^  every: 2$/  every: 10/' c.yaml > r.yaml
grep -q 'max_steps: 100' r.yaml && grep -q 'every: 10' r.yaml || fail "writing r.yaml"

# ---- 1. usage and config errors ------------------------------------------------------------
dfm-train --help > h || fail "--help exits non-zero"
expect_grep "^usage: dfm-train CONFIG.yaml" h
dfm-train --version > v || fail "--version exits non-zero"
expect_grep "^dfm-train [0-9]+\.[0-9]+\.[0-9]+$" v
dfm-train --help-config > hc || fail "--help-config exits non-zero"
expect_grep "^  optim\.lr \(float, default 1e-4\)$" hc
expect_grep "^  lora\.rank \(int, default 32\)$" hc
expect_eq "unknown option: exit" "$(code dfm-train c.yaml --bogus)" 2
expect_grep "^dfm-train: error: unknown option '--bogus'" err
expect_eq "no config: exit" "$(code dfm-train)" 2
expect_grep "^dfm-train: error: no config file" err
sed 's/^  lr: 1e-3$/  lr: 1e-3\n  lrr: 2/' c.yaml > e1.yaml
n=$(grep -n '^  lrr: 2$' e1.yaml | cut -d: -f1)
[ -n "$n" ] || fail "writing e1.yaml"
expect_eq "unknown key: exit" "$(code dfm-train e1.yaml)" 2
expect_grep "^dfm-train: error: e1\.yaml:$n: unknown key 'optim\.lrr' \(did you mean 'optim\.lr'\?\)" err
sed 's/^  batch_size: 2$/  batch_size: two/' c.yaml > e2.yaml
n=$(grep -n 'batch_size: two' e2.yaml | cut -d: -f1)
expect_eq "wrong type: exit" "$(code dfm-train e2.yaml)" 2
expect_grep "^dfm-train: error: e2\.yaml:$n: 'data\.batch_size' must be an integer, not 'two'" err
{ cat c.yaml; printf 'optimizer:\n  lr: 1e-3\n'; } > e3.yaml
n=$(grep -n '^optimizer:' e3.yaml | cut -d: -f1)
expect_eq "unknown section: exit" "$(code dfm-train e3.yaml)" 2
expect_grep "^dfm-train: error: e3\.yaml:$n: unknown section 'optimizer'" err
expect_eq "bad override: exit" "$(code dfm-train c.yaml --optim.lr fast)" 2
expect_grep "^dfm-train: error: .*'--optim\.lr' must be a number, not 'fast'" err
expect_eq "unknown override: exit" "$(code dfm-train c.yaml --optim.lrr 1)" 2
expect_grep "unknown key '--optim\.lrr' \(did you mean '--optim\.lr'\?\)" err
grep -v '^  path:' c.yaml > e4.yaml
expect_eq "no model.path: exit" "$(code dfm-train e4.yaml --checkpoint.dir e4run)" 2
expect_grep "^dfm-train: error: .*model\.path" err
expect_eq "data.shards matching nothing: exit" "$(code dfm-train c.yaml --data.shards 'nothing/*.tar' --checkpoint.dir e5run)" 2
expect_grep "^dfm-train: error: .*'nothing/\*\.tar'" err
[ ! -e e5run/LATEST ] || fail "a failed start wrote a checkpoint"
expect_eq "--print-config: exit" "$(code dfm-train c.yaml --optim.lr 5e-4 --print-config)" 0
expect_grep "^  lr: 0\.0005( |$)" out
expect_grep "^  rank: 4( |$)" out
expect_grep "^  batch_size: 2( |$)" out
expect_grep "^  shards: \[\"shards/\"\]( |$)" out
expect_grep "^  weight_decay: 0\.01( |$)" out
[ ! -e run ] || fail "--print-config created the run directory"

# ---- 2. a LoRA run: 8 steps, a checkpoint every 2, the last 2 kept -------------------------
expect_eq "LoRA run: exit" "$(code dfm-train c.yaml --checkpoint.dir L)" 0
cp err L.err
expect_grep "^dfm-train: steps 0\.\.8 of 8, 16 samples, 0 bad sample reads skipped, 0 skipped steps, [0-9.]+ s \(data wait [0-9.]+ s\), last loss [0-9.]+; run directory L$" L.err
expect_eq "LoRA run: progress lines" "$(losses L.err | wc -l | tr -d ' ')" 8
expect_eq "LoRA run: checkpoints kept (keep_last 2)" "$(cd L && ls -d step_* | tr '\n' ' ')" "step_6 step_8 "
expect_eq "LoRA run: saved lines" "$(grep -c '^dfm-train: info: saved L/step_[2468] ' L.err)" 4
expect_eq "LoRA run: LATEST" "$(readlink L/LATEST)" step_8
expect_eq "LoRA run: LATEST.txt" "$(cat L/LATEST.txt)" step_8
[ -f L/config.yaml ] || fail "LoRA run: no config.yaml in the run directory"
[ -z "$(find L -name '*.tmp*')" ] || fail "LoRA run: left $(find L -name '*.tmp*')"
for s in 6 8; do
  d=L/step_$s
  expect_eq "$d: .safetensors files" "$(cd $d && ls *.safetensors | tr '\n' ' ')" "adapter_model.safetensors "
  [ -f $d/adapter_config.json ] || fail "$d: no adapter_config.json"
  grep -q '"r": 4' $d/adapter_config.json || fail "$d/adapter_config.json: no \"r\": 4"
  for f in trainer.json optimizer.safetensors run.json config.yaml; do
    [ -s $d/state/$f ] || fail "$d: no state/$f"
  done
  grep -Eq "\"step\": $s[,}]?$" $d/state/trainer.json || fail "$d/state/trainer.json: not step $s"
done
ls L/events.out.tfevents.* > /dev/null 2>&1 || fail "LoRA run: no events.out.tfevents file"
expect_eq "LoRA run: TensorBoard train/loss steps" "$(tb_scalars train/loss L/events.out.tfevents.* | cut -d' ' -f1 | tr '\n' ' ')" "1 2 3 4 5 6 7 8 "
expect_eq "LoRA run: TensorBoard train/lr" "$(tb_scalars train/lr L/events.out.tfevents.* | cut -d' ' -f2 | sort -u)" 6f12833a # 1e-3
dfm-lora info L/step_8 > i 2> ierr || { cat ierr >&2; fail "dfm-lora info L/step_8"; }
expect_grep "^family +comfyui: original Wan names \(diffusion-pipe / ComfyUI\)" i
expect_grep "^rank +4$" i
expect_grep "^blocks +2 \(0-1\)$" i
cp L/step_8/adapter_model.safetensors L8.safetensors

# ---- 3. a full run: step_N is a diffusers transformer directory ----------------------------
expect_eq "full run: exit" "$(code dfm-train c.yaml --lora.rank 0 --train.max_steps 4 --checkpoint.dir F)" 0
cp err F.err
expect_grep "loaded .*: full fine-tuning, [0-9]+ trainable parameters" F.err
expect_eq "full run: checkpoints" "$(cd F && ls -d step_* | tr '\n' ' ')" "step_2 step_4 "
expect_eq "full run: step_4 files" "$(cd F/step_4 && ls | tr '\n' ' ')" "config.json diffusion_pytorch_model.safetensors state "
grep -q '"_class_name": "WanTransformer3DModel"' F/step_4/config.json || fail "full run: config.json is not a WanTransformer3DModel's"
cmp -s F/step_4/diffusion_pytorch_model.safetensors "$FX/wan_transformer_demo/transformer/diffusion_pytorch_model.safetensors" &&
  fail "full run: the weights did not change"

# ---- 4. exact resume ----------------------------------------------------------------------
# A: 100 steps uninterrupted; a checkpoint every 10
expect_eq "run A: exit" "$(code dfm-train r.yaml --checkpoint.dir A)" 0
cp err A.err
losses A.err > A.loss
expect_eq "run A: progress lines" "$(lines A.loss)" 100
tb_run A > A.tb
expect_eq "run A: TensorBoard scalars" "$(lines A.tb)" 200
W=step_100/adapter_model.safetensors
# same_as_a WHAT DIR — DIR's final weights, its TensorBoard losses and gradient norms, and the
# progress-line losses in DIR.loss equal run A's
same_as_a() {
  what=$1 dir=$2
  cmp -s $dir/$W A/$W || fail "$what: final weights differ from the uninterrupted run's"
  diff A.loss $dir.loss > /dev/null || { diff A.loss $dir.loss | head -n 20 >&2; fail "$what: progress-line losses differ from run A's"; }
  tb_run $dir > $dir.tb
  diff A.tb $dir.tb > /dev/null || { diff A.tb $dir.tb | head -n 20 >&2; fail "$what: TensorBoard train/loss or train/grad_norm differ from run A's"; }
}

# B: --stop-after 3 (mid-epoch), --resume --stop-after 2 (at the epoch's end), --resume to the end
expect_eq "run B --stop-after 3: exit" "$(code dfm-train r.yaml --checkpoint.dir B --stop-after 3)" 0
cp err B1.err
expect_grep "stopped by --stop-after at step 3: saved" B1.err
expect_eq "run B: LATEST after --stop-after 3" "$(latest B)" 3
[ -f B/step_3/adapter_model.safetensors ] || fail "run B: no step_3 after --stop-after 3"
expect_eq "run B --resume --stop-after 2: exit" "$(code dfm-train r.yaml --checkpoint.dir B --resume --stop-after 2)" 0
cp err B2.err
expect_grep "resuming from B/step_3: step 3, epoch 0, batch 3" B2.err
expect_no_grep "warning" B2.err
expect_eq "run B: LATEST after the second stop" "$(latest B)" 5
expect_eq "run B --resume: exit" "$(code dfm-train r.yaml --checkpoint.dir B --resume)" 0
cp err B3.err
expect_grep "resuming from B/step_5: step 5, epoch 1, batch 0" B3.err
expect_grep "^dfm-train: steps 5\.\.100 of 100, " B3.err
losses B1.err B2.err B3.err > B.loss
same_as_a "run B (--stop-after 3, 2, then the rest)" B

# bg_until_checkpoint DIR — start run DIR in the background (pid in $pid, stderr in DIR.err1) and
# wait until it has written a checkpoint (LATEST)
bg_until_checkpoint() {
  dfm-train r.yaml --checkpoint.dir $1 2> $1.err1 &
  pid=$!
  i=0
  until [ -e $1/LATEST.txt ]; do
    kill -0 $pid 2> /dev/null || { cat $1.err1 >&2; fail "run $1 ended before its first checkpoint"; }
    i=$((i + 1)); [ $i -lt 6000 ] || { kill -KILL $pid; fail "run $1: no checkpoint after 300 s"; }
    sleep 0.05
  done
}
# C: killed (SIGKILL) after its first checkpoint, resumed from LATEST
bg_until_checkpoint C
kill -KILL $pid 2> /dev/null || fail "run C: it ended before the kill (kill -KILL failed)"
st=0; wait $pid || st=$?
expect_eq "run C: exit status after SIGKILL" $st 137
k=$(latest C)
[ -n "$k" ] && [ "$k" -ge 10 ] && [ "$k" -lt 100 ] || fail "run C: LATEST is step '$k' after the kill, want 10..90"
expect_eq "run C --resume: exit" "$(code dfm-train r.yaml --checkpoint.dir C --resume)" 0
cp err C2.err
expect_grep "resuming from C/step_$k: step $k," C2.err
expect_grep "^dfm-train: steps $k\.\.100 of 100, " C2.err
# the progress lines up to the checkpoint (the killed run's later ones are lost work), then the
# resumed run's
{ losses C.err1 | awk -v k=$k '{ split($2, a, "/"); if (a[1] + 0 <= k) print }'; losses C2.err; } > C.loss
same_as_a "run C (SIGKILL after step_$k, --resume)" C

# D: SIGTERM after its first checkpoint: saves, exits 143; resumed to the end
bg_until_checkpoint D
kill -TERM $pid 2> /dev/null || fail "run D: it ended before SIGTERM (kill -TERM failed)"
st=0; wait $pid || st=$?
expect_eq "run D: exit status after SIGTERM" $st 143
k=$(latest D)
expect_grep "stopped by Terminated at step $k: saved; \`dfm-train r\.yaml --resume\` continues" D.err1
[ -f D/step_$k/adapter_model.safetensors ] && [ -f D/step_$k/state/trainer.json ] || fail "run D: step_$k is incomplete after SIGTERM"
expect_grep "^dfm-train: steps 0\.\.$k of 100, " D.err1
expect_eq "run D --resume: exit" "$(code dfm-train r.yaml --checkpoint.dir D --resume)" 0
cp err D2.err
expect_grep "resuming from D/step_$k: step $k," D2.err
losses D.err1 D2.err > D.loss
same_as_a "run D (SIGTERM at step $k, --resume)" D

# ---- 5. resume mistakes -------------------------------------------------------------------
# --resume step_6 of the LoRA run, nothing changed: no warning, step_8 byte for byte again
expect_eq "L --resume step_6: exit" "$(code dfm-train c.yaml --checkpoint.dir L --resume step_6)" 0
expect_grep "resuming from L/step_6: step 6," err
expect_no_grep "warning" err
cmp -s L/step_8/adapter_model.safetensors L8.safetensors || fail "L --resume step_6: step_8 differs from the first run's"
# ... with --optim.lr changed: a warning naming optim.lr, and the new rate used
expect_eq "L --resume step_6 --optim.lr 2e-3: exit" "$(code dfm-train c.yaml --checkpoint.dir L --resume step_6 --optim.lr 2e-3)" 0
expect_grep "^dfm-train: warning: .*optim\.lr.*0\.001.*0\.002" err
expect_eq "warnings naming a changed key" "$(grep -c '^dfm-train: warning: ' err)" 1
expect_grep "step 7/8  loss [0-9.]+  lr 2\.00e-03" err
cmp -s L/step_8/adapter_model.safetensors L8.safetensors && fail "L --resume --optim.lr 2e-3: step_8 unchanged"
# --resume with nothing to resume from
rc=$(code dfm-train c.yaml --checkpoint.dir E --resume)
expect_eq "--resume in an empty directory: exit (usage)" "$rc" 2
expect_grep "^dfm-train: error: --resume: nothing to resume from in 'E'" err
# a fresh start where a run is: refused, pointing at --resume, nothing touched
cp L/step_8/adapter_model.safetensors L8b.safetensors
expect_eq "fresh start in a run directory: exit" "$(code dfm-train c.yaml --checkpoint.dir L)" 2
expect_grep "^dfm-train: error: 'L' already holds a run \(step_8\): --resume continues it" err
cmp -s L/step_8/adapter_model.safetensors L8b.safetensors || fail "a refused start changed L/step_8"

# ---- 6. bad samples -----------------------------------------------------------------------
# shard 1 again with its first sample's latents starting with a NaN (f16 0x7e00) and its second
# sample's latents.npy cut to its header and 100 of 512 data bytes
mkdir bad x
cp shards/*.tar bad/
tar -tf shards/train-000001.tar > members
(cd x && tar -xf ../shards/train-000001.tar)
set -- $(grep 'latents\.npy$' members)
[ $# -ge 2 ] || fail "shard 1 holds $# samples, want >= 2"
n1=${1%.latents.npy} n2=${2%.latents.npy}
hl=$(od -An -tu2 -j8 -N2 "x/$1" | tr -d ' ') # .npy v1: header length at bytes 8-9
printf '\000\176' | dd of="x/$1" bs=1 seek=$((10 + hl)) conv=notrunc 2> /dev/null
head -c $((10 + hl + 100)) "x/$2" > t && mv t "x/$2"
(cd x && tar -cf ../bad/train-000001.tar -T ../members)
expect_eq "bad samples: exit" "$(code dfm-train c.yaml --data.shards bad --checkpoint.dir Bad)" 0
expect_grep "^dfm-train: warning: sample '$n1' \(shard 'bad/train-000001\.tar'\): latents\.npy has a NaN or Inf" err
expect_grep "^dfm-train: warning: sample '$n2' \(shard 'bad/train-000001\.tar'\): latents\.npy: .*truncated" err
expect_grep "^dfm-train: steps 0\.\.8 of 8, [0-9]+ samples, [1-9][0-9]* bad sample reads skipped, 0 skipped steps" err
[ -f Bad/step_8/adapter_model.safetensors ] || fail "bad samples: no step_8"

# ---- 7. determinism -----------------------------------------------------------------------
expect_eq "run A again: exit" "$(code dfm-train r.yaml --checkpoint.dir A2 -q)" 0
cmp -s A2/$W A/$W || fail "the same config twice: final weights differ"
expect_eq "run A with 1 thread: exit" "$(code dfm-train r.yaml --checkpoint.dir A1 --train.threads 1 -q)" 0
cmp -s A1/$W A/$W || fail "train.threads 1 vs 2: final LoRA weights differ"
expect_eq "full run with 1 thread: exit" "$(code dfm-train c.yaml --lora.rank 0 --train.max_steps 4 --checkpoint.dir F1 -j 1 -q)" 0
cmp -s F1/step_4/diffusion_pytorch_model.safetensors F/step_4/diffusion_pytorch_model.safetensors ||
  fail "full run, -j 1 vs train.threads 2: final weights differ"

# ---- 8. the man page: every option of --help, every key of --help-config -------------------
for o in $(grep -Eo -- '--[a-z][a-z-]+' h | sort -u); do
  case $o in --data | --optim | --train) continue ;; esac # the --section.key examples
  grep -E '^\.B[IR]? ' "$MAN" | grep -qF -- "$(printf '%s' "$o" | sed 's/-/\\-/g')" ||
    fail "option $o of --help is not in the man page ($MAN has no .B line with it)"
done
for k in $(sed -n 's/^  \([a-z_.]*\) (.*/\1/p' hc); do
  grep -qF ".BR $k \" (" "$MAN" || fail "config key $k of --help-config is not in the man page"
done
echo "ok"
