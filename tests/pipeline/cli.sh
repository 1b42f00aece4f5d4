# Every program: --help and --version on stdout with exit 0, unknown options exit 2.
. "$DFM_TOP/tests/lib.sh"
for p in dfm-decode dfm-bucket dfm-shard dfm-vae-encode dfm-vae-decode dfm-text-encode; do
  $p --help > h 2>/dev/null || fail "$p --help exit"
  expect_grep "^usage: $p" h
  $p --version > v || fail "$p --version exit"
  expect_grep "^$p [0-9]+\.[0-9]+\.[0-9]+" v
  set +e
  $p --no-such-option > /dev/null 2>err; rc=$?
  set -e
  expect_eq "$p bad option" $rc 2
  expect_grep "hint: try '$p --help'" err
  # every long option in --help is documented in the man page
  for o in $(grep -oE -- '--[a-z][a-z0-9-]+' h | sort -u); do
    grep -q -- "$(echo "$o" | sed 's/-/\\\\-/g')" "$DFM_TOP/man/man1/$p.1" || \
      grep -q -- "$o" "$DFM_TOP/man/man1/$p.1" || fail "$p: option $o is not in man/man1/$p.1"
  done
done
set +e
dfm-decode > /dev/null 2>err; rc=$?
set -e
expect_eq "decode without PATH" $rc 2
# a closed pipe ends quietly
dfm-decode "$DFM_TEST_MEDIA/media/videos" 2>err | head -c 10 > /dev/null
expect_no_grep "Broken pipe|error" err
