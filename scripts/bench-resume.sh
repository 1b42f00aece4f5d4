#!/bin/sh
# bench-resume.sh [BINDIR] [CLIPS] — the time a resumed preparation saves: a full run of
# dfm-decode | dfm-bucket | dfm-shard over CLIPS generated clips (default 100; 640x360, 2 s,
# ffmpeg testsrc2), against a run killed (SIGKILL to the whole pipeline) once 60% of its shards
# are complete and then rerun with dfm-decode --skip-done and dfm-shard --resume. Prints the
# times, the ratio rerun/full (ideal 0.40) and whether the shards equal the full run's, byte for
# byte. Three repetitions. A benchmark, not a test: nothing here fails on time.
set -eu
bindir=${1:-bin}
n=${2:-100}
PATH="$(cd "$bindir" && pwd):$PATH"
command -v ffmpeg >/dev/null || { echo "bench-resume: needs the ffmpeg CLI" >&2; exit 1; }
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
cd "$w"
mkdir clips
i=1
while [ $i -le "$n" ]; do
  ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=640x360:rate=24:duration=2" \
    -vf "hue=h=$((i * 3))" -c:v libx264 -pix_fmt yuv420p "clips/clip_$(printf %04d $i).mp4"
  i=$((i + 1))
done
shards=$(((n + 3) / 4))
cut=$((shards * 6 / 10)) # the kill: once this many shards are complete
cat > pipe.sh <<'EOF'
out=$1; shift
dfm-decode -q "$@" --frames 33 clips | dfm-bucket -q --preset 256p |
  dfm-shard -q -o "$out"/t-%06d.tar --max-count 4 ${SHARD_EXTRA:-}
EOF
now() { date +%s.%N; }
last=$(printf 't-%06d.tar' $((cut - 1)))
for rep in 1 2 3; do
  rm -rf full k
  s=$(now); sh pipe.sh full 2>/dev/null; e=$(now); full=$(echo "$e - $s" | bc)
  (exec setsid sh pipe.sh k 2>/dev/null) & pid=$!
  until [ -f "k/$last" ]; do sleep 0.01; done
  kill -KILL -$pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  done_n=$(ls k/*.tar | wc -l)
  s=$(now); SHARD_EXTRA=--resume sh pipe.sh k --skip-done k 2>/dev/null; e=$(now); res=$(echo "$e - $s" | bc)
  same=yes
  for f in full/*; do cmp -s "$f" "k/$(basename "$f")" || same=no; done
  echo "full $full s; killed with $done_n/$shards shards complete; rerun $res s;" \
    "rerun/full $(echo "scale=2; $res / $full" | bc); shards byte-identical: $same"
done
