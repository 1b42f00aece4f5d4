#!/bin/sh
# make demo — the main job on embedded data: generate a small media folder with FFmpeg, run
# dfm-decode | dfm-bucket | dfm-shard on it, encode latents and text states with tiny stand-in
# models, fine-tune a small Wan-architecture transformer on them with dfm-train, sample it with
# dfm-sample (an mp4 and a PNG contact sheet), and show what came out.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/bin"
out="$top/demo-out"
rm -rf "$out"
mkdir -p "$out"
echo "== generating media in demo-out/media (images, videos, captions, and a few bad files)"
"$top/scripts/gen-media.sh" "$out/media"
(cd "$out/media" && find . -type f | sort | sed 's|^\./|   |')
echo
echo "== dfm-decode --fps 16 --max-frames 33 demo-out/media | dfm-bucket --preset 256p | dfm-shard -o demo-out/shards/train-%06d.tar --max-count 8"
"$bin/dfm-decode" --fps 16 --max-frames 33 "$out/media" \
  | "$bin/dfm-bucket" --preset 256p \
  | "$bin/dfm-shard" -o "$out/shards/train-%06d.tar" --max-count 8
echo
echo "== shards"
ls -l "$out/shards" | sed 1d | awk '{printf "   %10s  %s\n", $5, $NF}'
echo
echo "== samples (dfm-shard --list demo-out/shards/*.tar; json cut short)"
"$bin/dfm-shard" --list "$out"/shards/*.tar 2>/dev/null | awk -F '\t' '{
  cap = ""; shape = ""; bucket = "";
  for (i = 2; i <= NF; i++) {
    if (index($i, "txt=") == 1) cap = substr($i, 5);
    if (index($i, "frames.npy=") == 1) shape = substr($i, 12);
  }
  printf "   %-48s %-18s %s\n", $1, shape, cap }'
echo
echo "== index.json (bucket histogram)"
sed -n '/"buckets"/,/}/p' "$out/shards/index.json" | sed 's/^/   /'
echo
# The model stages, with the tiny random test models standing in for Wan2.1-T2V-1.3B-Diffusers
# (the real one is the same directory layout, 1000x larger): latents and text states.
model="$out/tiny-wan"
mkdir -p "$model"
ln -sfn "$top/tests/fixtures/wan_vae/z16" "$model/vae"
ln -sfn "$top/tests/fixtures/tokenizer/rules" "$model/tokenizer"
ln -sfn "$top/tests/fixtures/umt5/tiny" "$model/text_encoder"
printf '%s\n' '{"_class_name": "WanPipeline", "vae": ["diffusers", "AutoencoderKLWan"],' \
  ' "tokenizer": ["transformers", "T5TokenizerFast"], "text_encoder": ["transformers", "UMT5EncoderModel"]}' \
  > "$model/model_index.json"
echo
echo "== dfm-shard --cat demo-out/shards/*.tar | dfm-vae-encode --model demo-out/tiny-wan | dfm-text-encode --model demo-out/tiny-wan | dfm-shard -o demo-out/latents/train-%06d.tar"
echo "   (tiny random test models in the real diffusers layout stand in for Wan2.1-T2V-1.3B-Diffusers)"
"$bin/dfm-shard" --cat "$out"/shards/*.tar \
  | "$bin/dfm-vae-encode" --model "$model" \
  | "$bin/dfm-text-encode" --model "$model" --dtype f32 \
  | "$bin/dfm-shard" -o "$out/latents/train-%06d.tar"
"$bin/dfm-shard" --list "$out"/latents/*.tar 2>/dev/null | awk -F '\t' '{
  lat = ""; txt = ""; tok = "";
  for (i = 2; i <= NF; i++) {
    if (index($i, "latents.npy=") == 1) lat = substr($i, 13);
    if (index($i, "text.npy=") == 1) txt = substr($i, 10);
  }
  printf "   %-48s latents %-16s text %s\n", $1, lat, txt }' | head -n 8
echo "   ..."
echo
echo "== dfm-train configs/demo.yaml   (full fine-tuning of a small random Wan-architecture model on those latents)"
cd "$top"
"$bin/dfm-train" configs/demo.yaml 2>&1 | grep -v ': saved ' | sed 's/^dfm-train: info: /   /'
echo
echo "== the run directory: demo-out/run"
(cd "$out/run" && ls -d LATEST step_* config.yaml events.out.tfevents.* 2>/dev/null | sed 's/^/   /')
echo "   LATEST -> $(readlink "$out/run/LATEST"): $(ls "$out/run/LATEST/" | tr '\n' ' ')"
echo "   load it in Python: WanTransformer3DModel.from_pretrained('demo-out/run/LATEST'); tensorboard --logdir demo-out/run"
echo
echo "== dfm-sample --model demo-out/tiny-wan --checkpoint demo-out/run -p ... -o demo-out/sample.mp4 (and a PNG contact sheet)"
echo "   (the fine-tuned small model: its text encoder and VAE are the tiny random stand-ins, so expect colours, not foxes)"
mkdir -p "$model/scheduler"
cp "$top/tests/fixtures/wan_sample/model/scheduler/scheduler_config.json" "$model/scheduler/"
"$bin/dfm-sample" -q -f --model "$model" --checkpoint "$out/run" -p "a red fox running through the snow" \
  --width 256 --height 256 --frames 17 --steps 20 --dtype f32 -o "$out/sample.mp4" 2>&1 | sed 's/^/   /'
"$bin/dfm-sample" -q -f --model "$model" --checkpoint "$out/run" -p "a red fox running through the snow" \
  --width 256 --height 256 --frames 17 --steps 20 --dtype f32 --grid -o "$out/sample.png" 2>&1 | sed 's/^/   /'
ls -l "$out/sample.mp4" "$out/sample.png" | awk '{printf "   %10s  %s\n", $5, $NF}'
echo
last=$(ls "$out/shards" | grep -c '\.tar$')
last=$(printf '%06d' $((last - 1)))
echo "Read the shards from Python:  import webdataset as wds; wds.WebDataset('demo-out/shards/train-{000000..$last}.tar')"
