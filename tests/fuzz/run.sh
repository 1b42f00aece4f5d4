#!/bin/sh
# tests/fuzz/run.sh DIR NAME... — `make fuzz`'s loop: run libFuzzer binary DIR/NAME for
# $FUZZ_SECONDS (default 60) per harness, one at a time, on the seeds in tests/fuzz/corpus/NAME
# (read only) plus DIR/corpus/NAME (where new inputs go), with tests/fuzz/NAME.dict if present.
# A crash, leak, timeout (10 s an input) or over-2-GiB allocation is written to DIR/crashes/NAME/;
# minimize it (DIR/NAME -minimize_crash=1 FILE), fix the bug, and save the reproducer in
# tests/fuzz/crashes/NAME/ so that `make test` replays it from then on. Extra libFuzzer flags:
# $FUZZ_ARGS. Prints one line per harness (executions, seconds, new corpus entries, verdict).
set -u
dir=$1
shift
secs=${FUZZ_SECONDS:-60}
failed=""
for name in "$@"; do
  mkdir -p "$dir/corpus/$name" "$dir/crashes/$name"
  dict=""
  [ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
  log="$dir/$name.log"
  echo "fuzz: $name for $secs s (log $log)" >&2
  # shellcheck disable=SC2086
  "$dir/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 -malloc_limit_mb=2048 \
    -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$dir/crashes/$name/" $dict ${FUZZ_ARGS:-} \
    "$dir/corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  new=$(ls "$dir/corpus/$name" | wc -l)
  if [ $rc -eq 0 ]; then
    echo "fuzz: $name ok: ${runs:-?} runs in $secs s, $new corpus entries" >&2
  else
    echo "fuzz: $name FAILED (exit $rc): ${runs:-?} runs; reproducer in $dir/crashes/$name/" >&2
    grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error)" "$log" | head -n 5 >&2
    failed="$failed $name"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: failed:$failed" >&2
  exit 1
fi
