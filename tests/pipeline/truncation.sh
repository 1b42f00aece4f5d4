# A crash upstream never looks like a normal end: a stream cut at a record boundary, inside a
# record, or by kill -9 of the writer makes every later stage say "input truncated (did the
# previous stage fail?)" and exit 1, write no end mark onward, and dfm-shard leaves no partial
# shard under a final name and no index entry for it. Both framings, and zstd.
. "$DFM_TOP/tests/lib.sh"
msg='input truncated \(did the previous stage fail\?\)'
dfm-decode "$M/images" 2>/dev/null > s.mp
full=$(wc -c < s.mp)
n=$(dfm-shard --list s.mp 2>/dev/null | wc -l | tr -d ' ')
[ "$n" -ge 6 ] || fail "need at least 6 samples, got $n"

# Record boundaries, from the stream itself: a stream of the first k samples is a prefix of the
# whole one plus its end record ({"__dfm_end__": k}, 14 bytes), and the begin record is 17 bytes.
dfm-shard -o one/p-%03d.tar --max-count 1 s.mp 2>/dev/null
dfm-shard --cat one/p-000.tar one/p-001.tar one/p-002.tar > three.mp 2>/dev/null
b3=$(($(wc -c < three.mp) - 14))
head -c $b3 three.mp > a; head -c $b3 s.mp > b
cmp -s a b || fail "three.mp is not a prefix of s.mp"
dfm-shard --cat --format tar one/p-000.tar one/p-001.tar one/p-002.tar > three.tar 2>/dev/null
t3=$(($(wc -c < three.tar) - 1024))   # the tar after 3 samples, without its two end blocks
dfm-shard --cat --format tar s.mp > s.tar 2>/dev/null
head -c $t3 three.tar > a; head -c $t3 s.tar > b
cmp -s a b || fail "three.tar is not a prefix of s.tar"
dfm-shard --cat --format tar.zst s.mp > s.zst 2>/dev/null

# run_cut FILE BYTES FORMAT: FILE cut to BYTES through dfm-bucket (framing FORMAT out) into
# dfm-shard, every stage's status and stderr kept
run_cut() {
  rm -rf out b.err s.err rc1 rc2
  set +e
  { head -c "$2" "$1"; } | { dfm-bucket --size 32x32 --format "$3" 2>b.err; echo $? > rc1; } \
    | { dfm-shard -o out/t-%03d.tar --max-count 2 2>s.err; echo $? > rc2; }
  set -e
}
# check_cut WHAT: both stages failed with the message, no end mark went on, no partial shard
check_cut() {
  expect_eq "$1: dfm-bucket exit" "$(cat rc1)" 1
  expect_eq "$1: dfm-shard exit" "$(cat rc2)" 1
  expect_grep "dfm-bucket: error: 'stdin': $msg" b.err
  expect_grep "dfm-shard: error: 'stdin': $msg" s.err
  [ -z "$(find out -name '*.tmp')" ] || fail "$1: .tmp left: $(find out -name '*.tmp')"
  grep -q '"complete": false' out/index.json || fail "$1: index says complete: $(cat out/index.json)"
  # what the index lists is on disk and whole; nothing else is there
  listed=$(grep -o '"url": "[^"]*"' out/index.json | sed 's/"url": "\(.*\)"/\1/' | sort | tr '\n' ' ')
  ondisk=$(cd out && ls *.tar 2>/dev/null | sort | tr '\n' ' ')
  expect_eq "$1: shards on disk = shards listed" "$ondisk" "$listed"
  for f in out/*.tar; do
    [ -e "$f" ] || continue
    dfm-shard --list "$f" > /dev/null 2>&1 || fail "$1: $f does not read back whole"
  done
}

# msgpack: empty pipe, after the begin record, at a record boundary, inside a record, without
# the end record, inside the end record
for cut in 0 17 $b3 $((b3 + 100)) $((full - 14)) $((full - 1)); do
  run_cut s.mp $cut msgpack
  check_cut "msgpack cut at $cut of $full"
done
# the stage before dfm-shard got samples out before the cut: complete shards are kept
run_cut s.mp $b3 msgpack
expect_grep 'read 3, written 3' b.err
expect_grep "read 3, written 2, skipped 0, .*1 shard, 1 sample dropped with the unfinished shard" s.err
[ -f out/t-000.tar ] && [ ! -e out/t-001.tar ] || fail "shards after a cut: $(ls out)"
# msgpack out of dfm-bucket: the same, one stage further
run_cut s.mp $((b3 + 100)) tar
check_cut "msgpack cut, tar between the stages"

# tar: at a member boundary (libarchive alone takes that for a clean end), inside a member,
# without end blocks at all
tfull=$(wc -c < s.tar)
for cut in $t3 $((t3 + 700)) $((tfull - 1024)); do
  run_cut s.tar $cut tar
  check_cut "tar cut at $cut of $tfull"
done
# zstd cut short
run_cut s.zst $(($(wc -c < s.zst) - 50)) msgpack
check_cut "tar.zst cut"

# the whole stream goes through clean, the index says complete
run_cut s.mp $full msgpack
expect_eq "whole: bucket exit" "$(cat rc1)" 0
expect_eq "whole: shard exit" "$(cat rc2)" 0
grep -q '"complete": true' out/index.json || fail "whole run: $(cat out/index.json)"

# kill -9 of a real writer mid-stream: dfm-shard --cat feeds dfm-bucket through a FIFO; we give it
# three samples, wait until they are through, and kill it
mkfifo src mid
rm -rf out
set +e
dfm-shard --cat src > mid 2>w.err &
wpid=$!
{ dfm-bucket --size 32x32 < mid 2>b.err; echo $? > rc1; } \
  | { dfm-shard -o out/t-%03d.tar --max-count 2 2>s.err; echo $? > rc2; } &
exec 3> src
head -c $b3 s.mp >&3
i=0
until grep -q '"nsamples": 2' out/index.json 2>/dev/null || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -9 $wpid
exec 3>&-
wait
set -e
check_cut "kill -9 of the writer"
expect_grep 'read 3, written 3' b.err

# dfm-decode that fails (--strict, a bad file) writes no end record: the next stage fails too
set +e
{ dfm-decode --strict "$M/images/wide" "$M/bad" 2>d.err; echo $? > rc1; } | dfm-shard --list > l 2>s.err
rc2=$?
set -e
expect_eq "decode --strict exit" "$(cat rc1)" 1
expect_eq "after decode failed: exit" $rc2 1
expect_grep "$msg" s.err
expect_eq "after decode failed: samples before kept" "$(lines l)" 2
# and a clean decode with a skipped file is a clean end
dfm-decode "$M/images/wide" "$M/bad" 2>/dev/null | dfm-shard --list > l 2>s.err
expect_eq "decode with skips: samples" "$(lines l)" 2
