# Bad files are reported with path and reason; the others go through; --strict stops with 1.
. "$DFM_TOP/tests/lib.sh"
dfm-decode "$M/bad" "$M/images/fox_in_snow.jpg" "$M/no/such/file.jpg" > out 2>err
expect_eq "exit status" $? 0
expect_grep "error: skipping '.*bad/empty.jpg': .*empty" err
expect_grep "error: skipping '.*bad/truncated.png'" err
expect_grep "error: skipping '.*bad/garbage.mp4'" err
expect_grep "error: skipping '.*no/such/file.jpg'" err
expect_grep 'read 5, written 1, skipped 4' err
expect_eq "good sample kept" "$(dfm-shard --list out 2>/dev/null | cut -f1)" "media%2Fimages%2Ffox_in_snow%2Ejpg"
tail -n 1 err | grep -q 'read .* written .* skipped' || fail "summary is not the last line"
set +e
dfm-decode --strict "$M/bad" > out 2>err
rc=$?
set -e
expect_eq "strict exit" $rc 1
# Too large: --max-pixels-in
dfm-decode --max-pixels-in 1000 "$M/images/fox_in_snow.jpg" > out 2>err
expect_grep "skipping .*fox_in_snow.jpg" err
expect_grep "skipped 1" err
# A corrupt stream into dfm-bucket: clear error, exit 1, no crash.
head -c 5000 /dev/urandom > junk
set +e
dfm-bucket junk > out 2>err; rc=$?
set -e
expect_eq "garbage stream exit" $rc 1
expect_grep "error: 'junk': " err   # not a stream, or (1 in 14: a map byte first) a bad record
# A truncated stream keeps the samples before the cut.
dfm-decode "$M/images/wide" 2>/dev/null > full
size=$(wc -c < full)
head -c $((size - 100)) full > cut
set +e
dfm-shard --list cut > l 2>err; rc=$?
set -e
expect_eq "truncated exit" $rc 1
expect_eq "kept before the cut" "$(lines l)" 1
# Usage errors exit 2 with a hint.
set +e
dfm-bucket --preset 999p < /dev/null > /dev/null 2>err; rc=$?
set -e
expect_eq "usage exit" $rc 2
expect_grep "hint: try 'dfm-bucket --help'" err
# A file name that is not UTF-8 (Latin-1 e-acute) still gives a valid UTF-8 key, source and caption.
mkdir -p latin
cp "$M/images/fox_in_snow.jpg" "$(printf 'latin/caf\351.jpg')"
dfm-decode latin 2>/dev/null | dfm-shard --list > l
expect_eq "latin-1 key" "$(cut -f1 l)" "latin%2Fcaf%E9%2Ejpg"
expect_eq "latin-1 caption" "$(field 'latin%2Fcaf%E9%2Ejpg' txt l)" "$(printf 'caf\357\277\275')"
field 'latin%2Fcaf%E9%2Ejpg' json l | grep -q "\"source\":\"$(printf 'latin/caf\357\277\275.jpg')\"" || fail "latin-1 source: $(cat l)"
# A write error names the output once, with the reason, in one line, and exits 1.
dfm-decode "$M/images/wide" 2>/dev/null > s2
# once_line PATTERN SUBJECT: exactly one line matches PATTERN, and SUBJECT appears once in it
once_line() {
  [ "$(grep -c -- "$1" err)" = 1 ] || { cat err; fail "want one line matching '$1'"; }
  [ "$(grep -- "$1" err | grep -o -- "$2" | wc -l | tr -d ' ')" = 1 ] || { cat err; fail "'$2' twice"; }
}
set +e
dfm-bucket --size 32x32 -o /dev/full s2 2>err; rc=$?
set -e
expect_eq "-o /dev/full exit" $rc 1
once_line "error: cannot write '/dev/full': No space left on device" /dev/full
[ ! -e /dev/full.tmp ] || fail "/dev/full.tmp was created"
for cmd in "dfm-bucket --size 32x32 s2" "dfm-shard --cat s2" "dfm-shard --cat --format tar s2" \
           "dfm-shard --list s2"; do
  set +e
  $cmd > /dev/full 2>err; rc=$?
  set -e
  expect_eq "$cmd > /dev/full exit" $rc 1
  once_line "error: cannot write to stdout: No space left on device" stdout
done
set +e
dfm-bucket --size 32x32 -o no/such/dir/x s2 2>err; rc=$?
set -e
expect_eq "missing directory exit" $rc 1
once_line "error: cannot create 'no/such/dir/x': No such file or directory" no/such/dir/x
if [ "$(id -u)" != 0 ]; then   # root writes anywhere
  mkdir ro && chmod 555 ro
  set +e
  dfm-bucket --size 32x32 -o ro/x s2 2>err; rc=$?
  set -e
  expect_eq "read-only directory exit" $rc 1
  once_line "error: cannot create 'ro/x': Permission denied" ro/x
fi
