#!/bin/sh
# make demo — the main job on embedded data: generate a small media folder with FFmpeg, run
# dfm-decode | dfm-bucket | dfm-shard on it, and show what came out.
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
last=$(ls "$out/shards" | grep -c '\.tar$')
last=$(printf '%06d' $((last - 1)))
echo "Read the shards from Python:  import webdataset as wds; wds.WebDataset('demo-out/shards/train-{000000..$last}.tar')"
