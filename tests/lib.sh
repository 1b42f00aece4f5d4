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
# latent_model DIR — a diffusers-layout Wan root at DIR linking the tiny VAE, tokenizer and UMT5
# fixtures (text_dim 64): the latent chain's --model
latent_model() {
  mkdir -p "$1"
  ln -s "$DFM_TOP/tests/fixtures/wan_vae/z16" "$1/vae"
  ln -s "$DFM_TOP/tests/fixtures/tokenizer/rules" "$1/tokenizer"
  ln -s "$DFM_TOP/tests/fixtures/umt5/tiny" "$1/text_encoder"
  printf '%s\n' '{"_class_name": "WanPipeline", "vae": ["diffusers", "AutoencoderKLWan"],' \
    ' "tokenizer": ["transformers", "T5TokenizerFast"], "text_encoder": ["transformers", "UMT5EncoderModel"]}' \
    > "$1/model_index.json"
}
# latent_shards PART OUT [DFM-SHARD OPTION...] — the demo's chain on the generated images,
# dfm-decode --part PART | dfm-bucket --size 32x32 | dfm-vae-encode | dfm-text-encode --dtype f32 |
# dfm-shard --part PART -o OUT (latents [16,1,4,4], text states [L,64]; PART 0/1 is the whole run),
# with latent_model's model/ (made when missing); fails the test naming the part
latent_shards() {
  _part=$1 _out=$2
  shift 2
  [ -d model ] || latent_model model
  { dfm-decode -q --part "$_part" "$DFM_TEST_MEDIA/media/images" | dfm-bucket -q --size 32x32 |
    dfm-vae-encode -q --model model | dfm-text-encode -q --model model --dtype f32 |
    dfm-shard -q --part "$_part" -o "$_out" "$@"; } 2> latents.err ||
    { cat latents.err >&2; fail "preparing the latent shards (--part $_part)"; }
}
