#!/bin/sh
# tests/run.sh BINDIR [all|unit] — run the unit tests and (all) the pipeline tests, then print
# one closing line "N passed, N failed, N skipped" counting every unit and pipeline test.
# A pipeline test is tests/pipeline/*.sh: exit 0 passes, 77 skips, anything else fails.
# Fuzz replays (both modes): BINDIR/fuzz-replay/NAME runs harness tests/fuzz/fuzz_NAME.c on
# tests/fuzz/corpus/NAME and on tests/fuzz/crashes/NAME, one test each.
set -u
bindir=$(cd "${1:-bin}" && pwd)
mode=${2:-all}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
passed=0 failed=0 skipped=0

# Sanitizer builds (make test SAN=1) that use CUDA: ASan's protected shadow gap is where the CUDA
# driver maps its memory (it fails to start without protect_shadow_gap=0), and LeakSanitizer
# would report what the driver and runtime keep until exit (tests/lsan-cuda.supp). Options
# already in the environment are kept, after ours (the later setting of an option wins).
# Binaries built without the sanitizers ignore both variables.
ASAN_OPTIONS="protect_shadow_gap=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
LSAN_OPTIONS="suppressions=$top/tests/lsan-cuda.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export ASAN_OPTIONS LSAN_OPTIONS

log=$(mktemp)
"$bindir/dfm-unit-tests" >"$log" 2>&1
status=$?
grep -E '^(FAIL|  )' "$log" >&2 || true
line=$(tail -n 1 "$log")
rm -f "$log"
up=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
uf=$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
if [ -z "$up" ]; then
  echo "unit tests: runner crashed (status $status): $line" >&2
  up=0 uf=1
fi
echo "unit tests: $up passed, $uf failed" >&2
passed=$((passed + up)); failed=$((failed + uf))

for src in tests/fuzz/fuzz_*.c; do
  [ -e "$src" ] || continue
  name=$(basename "$src" .c); name=${name#fuzz_}
  for set in corpus crashes; do
    [ -d "tests/fuzz/$set/$name" ] || continue
    out=$(mktemp)
    if [ ! -x "$bindir/fuzz-replay/$name" ]; then
      echo "FAIL fuzz/$name/$set: $bindir/fuzz-replay/$name not built" >&2; failed=$((failed + 1))
    elif "$bindir/fuzz-replay/$name" "tests/fuzz/$set/$name" >"$out" 2>&1; then
      echo "ok   fuzz/$name/$set ($(tail -n 1 "$out"))" >&2; passed=$((passed + 1))
    else
      echo "FAIL fuzz/$name/$set (the last input named below)" >&2
      tail -n 40 "$out" | sed 's/^/    /' >&2
      failed=$((failed + 1))
    fi
    rm -f "$out"
  done
done

if [ "$mode" = all ]; then
  export PATH="$bindir:$PATH" DFM_TOP="$top"
  DFM_TEST_MEDIA=$(mktemp -d)
  export DFM_TEST_MEDIA
  scripts/gen-media.sh "$DFM_TEST_MEDIA/media" >&2
  for t in tests/pipeline/*.sh; do
    name=$(basename "$t" .sh)
    out=$(mktemp)
    TMPDIR_T=$(mktemp -d)
    (cd "$TMPDIR_T" && sh "$top/$t") >"$out" 2>&1
    rc=$?
    rm -rf "$TMPDIR_T"
    if [ $rc -eq 0 ]; then
      echo "ok   pipeline/$name" >&2; passed=$((passed + 1))
    elif [ $rc -eq 77 ]; then
      echo "skip pipeline/$name: $(tail -n 1 "$out")" >&2; skipped=$((skipped + 1))
    else
      echo "FAIL pipeline/$name (exit $rc)" >&2; sed 's/^/    /' "$out" | tail -n 40 >&2
      failed=$((failed + 1))
    fi
    rm -f "$out"
  done
  rm -rf "$DFM_TEST_MEDIA"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
