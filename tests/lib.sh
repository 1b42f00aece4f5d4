# tests/lib.sh — helpers for the pipeline tests (sourced). Each test runs in its own temp
# directory with bin/ on PATH; $DFM_TEST_MEDIA/media holds scripts/gen-media.sh output.
set -eu
# media/ in the test's directory points at the generated media, so file arguments have short,
# stable names (keys): media/videos/ocean_waves.mp4 -> media%2Fvideos%2Focean_waves%2Emp4
ln -s "$DFM_TEST_MEDIA/media" media
M=media
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
# expect_grep PATTERN FILE — FILE has a line matching the extended regex
expect_grep() { grep -Eq -- "$1" "$2" || { cat "$2" >&2; fail "no line matching '$1' in $2"; }; }
expect_no_grep() { ! grep -Eq -- "$1" "$2" || { cat "$2" >&2; fail "unexpected '$1' in $2"; }; }
# lines FILE — number of lines
lines() { wc -l < "$1" | tr -d ' '; }
# field KEY NAME LISTFILE — value of field NAME of sample KEY in a --list listing
field() { awk -F '\t' -v k="$1" -v f="$2" '$1 == k { for (i = 2; i <= NF; i++) if (index($i, f "=") == 1) { print substr($i, length(f) + 2); exit } }' "$3"; }
# mpirun_n N CMD [ARGS...] — run CMD as N ranks of one job under Open MPI's mpirun on this machine
# and return mpirun's status: as root too, more ranks than cores (--oversubscribe, unpinned),
# shared memory only (pml ob1, btl self,vader; the single-copy mechanism off, which containers
# without ptrace rights refuse), stdin closed, and killed after 120 s so that a hang fails the test.
# Sanitizer builds: whole malloc stacks (ASan's fast unwinder stops in libc, and Open MPI's
# allocations must reach a library named in tests/lsan-cuda.supp).
# Skips the test (exit 77, naming what is missing) without mpirun, or without dfm-dist-mpi.so beside
# CMD (or $DFM_DIST_PLUGIN).
mpirun_n() {
  command -v mpirun >/dev/null 2>&1 ||
    { echo "mpirun not found (apt-get install openmpi-bin libopenmpi-dev, then rebuild)"; exit 77; }
  _dir=$(dirname "$(command -v "$2")")
  [ -e "$_dir/dfm-dist-mpi.so" ] || [ -n "${DFM_DIST_PLUGIN:-}" ] ||
    { echo "no dfm-dist-mpi.so in $_dir (dfm was built without Open MPI: apt-get install libopenmpi-dev, then rebuild)"; exit 77; }
  _n=$1; shift
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none \
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0" \
    timeout -k 5 120 mpirun --oversubscribe --bind-to none --mca pml ob1 --mca btl self,vader -np "$_n" "$@" </dev/null
}
