#!/bin/sh
# make bench — dfm-decode | dfm-bucket --preset 512p against the NeMo-way Python baseline
# (scripts/bench_baseline.py) on the same generated inputs, in one invocation. Prints
# throughput, the ratio and peak memory. Inputs: 200 1920x1080 JPEGs (BENCH_IMAGES to change),
# 4 1080p H.264 clips of 49 frames and 2 4K clips of 150. BENCH_BIN, BENCH_WORK: the binaries
# and the scratch folder (default bin/, bench-out/); BENCH_ONLY=images stops after the images.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin="${BENCH_BIN:-$top/bin}"   # BENCH_BIN: the binaries to measure (default bin/)
work="${BENCH_WORK:-$top/bench-out}"
nimg=${BENCH_IMAGES:-200}
mkdir -p "$work/img" "$work/vid"
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
if [ "$(ls "$work/img" | wc -l)" -ne "$nimg" ]; then
  echo "bench: generating $nimg 1920x1080 JPEGs" >&2
  rm -f "$work/img"/*
  ff -f lavfi -i "testsrc2=size=1920x1080:rate=25,noise=alls=12:allf=t" -frames:v "$nimg" -q:v 2 "$work/img/im%04d.jpg"
fi
for i in 1 2 3 4; do
  [ -f "$work/vid/clip$i.mp4" ] || ff -f lavfi -i "testsrc2=size=1920x1080:rate=24,noise=alls=8:allf=t,hue=H=$i*t" \
    -frames:v 49 -c:v libx264 -preset fast -pix_fmt yuv420p "$work/vid/clip$i.mp4"
done
have_py=1
python3 -c "import PIL, numpy" 2>/dev/null || have_py=0
have_cv=1
python3 -c "import cv2, numpy" 2>/dev/null || have_cv=0

# run NAME CMD... : time a command with GNU time, print "seconds maxrss_kib"
run() {
  /usr/bin/time -f "%e %M" -o "$work/time" sh -c "$1" > "$work/out" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  cat "$work/time"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
printf "%-44s %10s %10s %9s\n" "images: $nimg x 1920x1080 JPEG -> 512p" "images/s" "peak MiB" "ratio"
# The baseline is a Pillow pool of one worker per core (its peak: summed over the processes);
# dfm: the exact path, and the size hint (dfm-decode --preset 512p: JPEGs decoded at a DCT
# scale of 1/2 here, resized to cover in dfm-decode; dfm-bucket only crops).
set -- $(run "'$bin/dfm-decode' -q '$work/img' | '$bin/dfm-bucket' -q --preset 512p > /dev/null")
dfm_s=$1 dfm_kb=$2
dfm_ips=$(echo "$nimg $dfm_s" | awk '{printf "%.1f", $1/$2}')
set -- $(run "'$bin/dfm-decode' -q --preset 512p '$work/img' | '$bin/dfm-bucket' -q --preset 512p > /dev/null")
hint_s=$1 hint_kb=$2
hint_ips=$(echo "$nimg $hint_s" | awk '{printf "%.1f", $1/$2}')
if [ $have_py = 1 ]; then
  run "python3 '$top/scripts/bench_baseline.py' images '$work/img'" > /dev/null
  py_s=$(awk '{print $3}' "$work/out") py_kb=$(awk '{print $4}' "$work/out")
  py_ips=$(echo "$nimg $py_s" | awk '{printf "%.1f", $1/$2}')
  printf "%-44s %10s %10s %9s\n" "  python PIL pool, $(nproc) workers (NeMo)" "$py_ips" "$((py_kb / 1024))" "1.00x"
fi
ratio() { [ $have_py = 1 ] && echo "$1 $py_ips" | awk '{printf "%.2fx", $1/$2}' || echo "n/a"; }
printf "%-44s %10s %10s %9s\n" "  dfm-decode | dfm-bucket (exact)" "$dfm_ips" "$((dfm_kb / 1024))" "$(ratio $dfm_ips)"
printf "%-44s %10s %10s %9s\n" "  dfm-decode --preset 512p | dfm-bucket" "$hint_ips" "$((hint_kb / 1024))" "$(ratio $hint_ips)"
echo "  (dfm peak is the larger of the two processes; the pool's is summed over its processes)"
# Memory must not grow with the number of inputs: the same pipeline on a quarter of the images.
q=$((nimg / 4))
mkdir -p "$work/imgq"
for f in $(ls "$work/img" | head -n $q); do ln -sf "../img/$f" "$work/imgq/$f"; done
set -- $(run "'$bin/dfm-decode' -q '$work/imgq' | '$bin/dfm-bucket' -q --preset 512p > /dev/null")
echo "  memory flat in the inputs: peak $(($2 / 1024)) MiB on $q images, $((dfm_kb / 1024)) MiB on $nimg"
set -- $(run "'$bin/dfm-decode' -q --preset 512p '$work/imgq' | '$bin/dfm-bucket' -q --preset 512p > /dev/null")
echo "  with the hint: peak $(($2 / 1024)) MiB on $q images, $((hint_kb / 1024)) MiB on $nimg"
[ "${BENCH_ONLY:-}" = images ] && exit 0   # BENCH_ONLY=images: this part alone
echo
# Videos: 1080p clips and 4K clips (a phone's), each through OpenCV (NeMo's loader), dfm's exact
# path, dfm with the size hint (dfm-decode --preset 512p: frames scaled down as they are decoded,
# memory bounded by the output size) and the FFmpeg decode floor.
for i in 1 2; do
  [ -f "$work/vid4k/clip$i.mp4" ] || { mkdir -p "$work/vid4k"; echo "bench: generating 4K clip $i" >&2
    ff -f lavfi -i "testsrc2=size=3840x2160:rate=30,noise=alls=8:allf=t,hue=H=$i*t" \
      -frames:v 150 -c:v libx264 -preset veryfast -pix_fmt yuv420p "$work/vid4k/clip$i.mp4"; }
done
# video_bench DIR FRAMES LABEL
video_bench() {
  vdir=$1 nfr=$2
  printf "%-44s %10s %10s %9s\n" "$3" "frames/s" "peak MiB" "ratio"
  py_fps=
  if [ $have_cv = 1 ]; then
    set -- $(run "python3 '$top/scripts/bench_baseline.py' videos '$vdir'")
    py_s=$(cat "$work/out" | awk '{print $3}') py_kb=$2
    py_fps=$(echo "$nfr $py_s" | awk '{printf "%.1f", $1/$2}')
    printf "%-44s %10s %10s %9s\n" "  python OpenCV (NeMo load_video_frames)" "$py_fps" "$((py_kb / 1024))" "1.00x"
  fi
  for hint in "" "--preset 512p"; do
    set -- $(run "'$bin/dfm-decode' -q --max-frames 1000 $hint '$vdir' | '$bin/dfm-bucket' -q --preset 512p --frame-rule none > /dev/null")
    dfm_fps=$(echo "$nfr $1" | awk '{printf "%.1f", $1/$2}')
    ratio=$( [ -n "$py_fps" ] && echo "$dfm_fps $py_fps" | awk '{printf "%.2fx", $1/$2}' || echo "n/a (pip install opencv-python-headless)")
    printf "%-44s %10s %10s %9s\n" "  dfm-decode ${hint:+$hint }| dfm-bucket" "$dfm_fps" "$(($2 / 1024))" "$ratio"
  done
  # The floor: FFmpeg's own H.264 decoder, all cores, no colour conversion, no resize.
  set -- $(run "for f in '$vdir'/*.mp4; do ffmpeg -nostdin -v error -threads $(nproc) -i \$f -f null - || exit 1; done")
  floor=$(echo "$nfr $1" | awk '{printf "%.1f", $1/$2}')
  ratio=$( [ -n "$py_fps" ] && echo "$floor $py_fps" | awk '{printf "%.2fx", $1/$2}' || echo "")
  printf "%-44s %10s %10s %9s\n" "  ffmpeg CLI decode only (the floor)" "$floor" "$(($2 / 1024))" "$ratio"
}
video_bench "$work/vid" $((4 * 49)) "videos: 4 x 49 frames 1080p H.264 -> 512p"
video_bench "$work/vid4k" $((2 * 150)) "videos: 2 x 150 frames 4K H.264 -> 512p"
echo "  (dfm peak is the larger of the two processes; the hint's bound on the pixels: man dfm-decode)"

echo
# VAE encode against diffusers (needs torch + diffusers from PyPI; skipped without them).
if python3 -c "import torch, diffusers, msgpack, numpy" 2>/dev/null; then
  python3 "$top/scripts/bench_vae.py" "$work" "$bin" "$(nproc)"
else
  echo "VAE encode: skipped (pip install torch diffusers msgpack numpy for the diffusers baseline)"
fi

echo
# Tokenizer throughput against Hugging Face tokenizers, and UMT5 at the real width against
# transformers (both need PyPI packages; skipped without them).
if python3 -c "import tokenizers, msgpack, numpy" 2>/dev/null; then
  python3 "$top/scripts/bench_tokenizer.py" "$work" "$bin"
else
  echo "tokenizer: skipped (pip install tokenizers msgpack numpy for the Hugging Face baseline)"
fi
echo
# The CPU GEMMs per SIMD level (the packed linear on UMT5's layers, matmul on the transformer's)
# against OpenBLAS and the FMA / VDPBF16PS peaks (C only: always runs).
make -s --no-print-directory -C "$top" build/libdfm.a
cflags=$(make -s --no-print-directory -C "$top" --eval='print-%: ; @echo $($*)' print-CFLAGS)
ldlibs=$(make -s --no-print-directory -C "$top" --eval='print-%: ; @echo $($*)' print-LDLIBS)
(cd "$top" && ${CC:-cc} $cflags -o "$work/bench_linear" scripts/bench_linear.c build/libdfm.a $ldlibs)
"$work/bench_linear" --threads "$(nproc)"
echo
# Every op of the op table on its big cases, CPU and (when a device is here) CUDA: ms and GFLOP/s
# or GB/s per case (tests/unit/test_backend_ops.c, perf mode; C only: always runs).
echo "op table (backend_perf):"
DFM_BACKEND_PERF=1 "$bin/dfm-unit-tests" backend_perf
echo
if python3 -c "import torch, transformers, safetensors" 2>/dev/null; then
  python3 "$top/scripts/bench_umt5.py" "$work" --threads "$(nproc)" --rounds 3 --no-make
  # the full-size model (11.5 GB of random bf16 shards written once; load, encode, memory)
  if [ "${BENCH_XXL:-0}" = 1 ]; then
    echo
    python3 "$top/scripts/bench_umt5_xxl.py" "$work" --threads "$(nproc)" --no-make
  fi
else
  echo "UMT5 encode: skipped (pip install torch transformers safetensors for the baseline)"
fi
echo
# The Wan 2.1 transformer at the 1.3B width (2 blocks, 1,920 tokens) against diffusers: LoRA r32,
# full f32 and forward steps, the attention op alone, the GEMM rates now, and dfm's LoRA training
# memory (1 vs 2 blocks) extrapolated to the 30-block model (scripts/bench_transformer.py). The dfm
# side is C and always runs; the diffusers side needs torch, diffusers and peft in BENCH_PYTHON
# (default python3). BENCH_LONG=1: the attention at 32,760 tokens (480x832x81; 18x the work) and
# LoRA training memory measured at 32,760 tokens (1 and 2 blocks).
python3 "$top/scripts/bench_transformer.py" "$work" --threads "$(nproc)" --python "${BENCH_PYTHON:-python3}" --no-make \
  $([ "${BENCH_LONG:-0}" = 1 ] && echo "--attn-tokens 32760 --mem-check-long")
echo
# dfm-train end to end (shards, forward, backward, AdamW, logging) against the same loop in PyTorch
# (diffusers + PEFT, torch.optim.AdamW) at the 1.3B width with 2 blocks: LoRA r32 bf16 and full f32,
# s/step, peak memory, dfm's data wait (scripts/bench_train.py; the torch side needs torch, diffusers
# and peft in BENCH_PYTHON). BENCH_LONG=1: also the peak memory of 30-block LoRA training at
# 256x256x17 with activation checkpointing (writes 2.8 GB of random weights; ~1 min a step).
if python3 -c "import numpy" 2>/dev/null; then
  python3 "$top/scripts/bench_train.py" "$work" --bin "$bin" --threads "$(nproc)" --python "${BENCH_PYTHON:-python3}" \
    $([ "${BENCH_LONG:-0}" = 1 ] && echo "--mem-30")
  echo
  # dfm-train data parallel: LoRA at global batch 2 on 1 rank (all cores, batch 2) against 2 ranks
  # under mpirun (half the cores, batch 1 each): s/step, samples/s, the ratio, the collectives' share
  # (skipped without mpirun or bin/dfm-dist-mpi.so)
  python3 "$top/scripts/bench_train.py" "$work" --bin "$bin" --threads "$(nproc)" --only dist
else
  echo "dfm-train: skipped (pip install numpy for the shards; torch diffusers peft for the PyTorch baseline)"
fi
echo
# dfm-sample against diffusers' WanPipeline (random models: the 1.3B-width transformer with 2 blocks,
# UMT5 at the XXL width with 1 layer, the tiny VAE): s/step of the CFG pair at 480x832x17 (7,800
# tokens), the whole run to an .mp4 at 256x256x17, peak memory (scripts/bench_sample.py; the diffusers
# side needs torch, diffusers, transformers, imageio and imageio-ffmpeg in BENCH_PYTHON). BENCH_LONG=1:
# also the peak memory of dfm-sample with the 30-block 1.3B model at 480x832x81, 1 step, and the
# real-size VAE, per phase (writes 3.3 GB of random weights; hours on 2 cores). BENCH_ROUNDS (3): rounds
# of dfm then diffusers for the s/step, whose median ratio is printed (the machine's speed drifts by
# several percent over minutes).
if python3 -c "import numpy" 2>/dev/null; then
  python3 "$top/scripts/bench_sample.py" "$work" --bin "$bin" --threads "$(nproc)" --python "${BENCH_PYTHON:-python3}" \
    --rounds "${BENCH_ROUNDS:-3}" \
    $([ "${BENCH_LONG:-0}" = 1 ] && echo "--mem-30")
else
  echo "dfm-sample: skipped (pip install numpy for the models; torch diffusers transformers imageio imageio-ffmpeg for WanPipeline)"
fi
echo
# a killed preparation resumed (dfm-decode --skip-done, dfm-shard --resume): the rerun's time against
# a full run's, and whether the shards equal the full run's byte for byte (scripts/bench-resume.sh)
sh "$top/scripts/bench-resume.sh" "$bin"
