# Resumable, incremental preparation: dfm-shard --resume keeps an earlier run's complete shards and
# numbers on; dfm-decode --skip-done DIR leaves out the files whose samples are all in DIR. A run
# killed mid-way (SIGKILL to dfm-shard, SIGKILL to the whole pipeline, an upstream death), then
# rerun, gives the samples (keys and bytes) of one uninterrupted run; with count rolling in one
# series even the same shards and index.json. New files added later: only their samples appended.
# Options that would change the series are refused.
. "$DFM_TOP/tests/lib.sh"
# a writable copy of the images and videos (new files are added to it later)
mkdir data
cp -RL "$M/images" "$M/videos" data/
dec() { dfm-decode -q "$@" data/images data/videos; }
bkt() { dfm-bucket -q --size 64x64; }
dec 2>/dev/null | bkt > s
dfm-shard -q --list s > all.l 2>/dev/null
expect_eq "samples" "$(lines all.l)" 16
# the uninterrupted run: 4 shards of 5, 5, 5, 1 (cat.bmp's two captions, samples 5 and 6, are cut
# by the first boundary)
dfm-shard -q -o ref/t-%06d.tar --max-count 5 s 2>/dev/null
# the samples of a series' shards, byte for byte: every member KEY.FIELD extracted into DIR
union() { _u=$1; shift; mkdir "$_u"; for _f in "$@"; do tar -xf "$_f" -C "$_u"; done; }
same_as_ref() { # DIR: same shards, byte for byte, and the same index
  for f in ref/*; do cmp -s "$f" "$1/$(basename "$f")" || fail "$1: $(basename "$f") differs from the uninterrupted run's"; done
  expect_eq "$1: files" "$(ls "$1" | tr '\n' ' ')" "$(ls ref | tr '\n' ' ')"
}

# 1. SIGKILL to dfm-shard once its first shard is complete: it reads a FIFO fed 7 samples (shard
#    0 complete, shard 1 open) that then stays open, so the kill is certain to land mid-run.
dfm-shard -q -o seven/x-%d.tar --max-count 7 s 2>/dev/null # the first 7 samples as one tar
mkfifo fifo
dfm-shard -q -o k/t-%06d.tar --max-count 5 < fifo 2>kerr & spid=$!
exec 3> fifo
cat seven/x-0.tar >&3
i=0
until [ -f k/t-000000.tar ]; do
  sleep 0.05; i=$((i + 1)); [ $i -lt 1200 ] || fail "no first shard after 60 s: $(cat kerr)"
done
sleep 0.3 # sample 6 into the open shard's .tmp
kill -KILL $spid
wait $spid 2>/dev/null || true
exec 3>&-
expect_eq "after the kill" "$(ls k | tr '\n' ' ')" "index.json t-000000.tar t-000001.tar.tmp "
grep -q '"complete": false' k/index.json || fail "killed run's index: $(cat k/index.json)"
# the rerun: cat.bmp (5 in shard 0, @c1 lost) is decoded again and only @c1 written; the
# 4 other files of shard 0 are not read at all
dec --skip-done k 2>derr | bkt | dfm-shard -o k/t-%06d.tar --max-count 5 --resume 2>serr
expect_grep 'read 11, written 11, skipped 0, .* 4 inputs already in .k. skipped, 1 sample already there dropped' derr
expect_grep 'read 11, written 11, skipped 0, .* 3 shards, 1 shard \(5 samples\) kept from the earlier run' serr
same_as_ref k

# 2. SIGKILL to the whole pipeline (one file at a time, one sample a shard) after its first shard
#    is complete; wherever the kill lands, the rerun completes the series exactly.
( exec setsid sh -c 'dfm-decode -q -j 1 data/images data/videos | dfm-bucket -q --size 64x64 -j 1 |
    dfm-shard -q -o p/t-%06d.tar --max-count 1' ) 2>/dev/null & ppid=$!
i=0
until [ -f p/t-000000.tar ] || ! kill -0 $ppid 2>/dev/null; do
  sleep 0.02; i=$((i + 1)); [ $i -lt 3000 ] || fail "pipeline: no first shard after 60 s"
done
kill -KILL -$ppid 2>/dev/null || true # its process group: every stage
wait $ppid 2>/dev/null || true
before=$(ls p | grep -c '\.tar$' || true)
echo "pipeline killed with $before of 16 shards complete" >&2
dec --skip-done p 2>derr | bkt | dfm-shard -q -o p/t-%06d.tar --max-count 1 --resume 2>serr
expect_grep "inputs? already in 'p' skipped" derr
dfm-shard -q -o ref1/t-%06d.tar --max-count 1 s 2>/dev/null
for f in ref1/*; do cmp -s "$f" "p/$(basename "$f")" || fail "p: $(basename "$f") differs from the uninterrupted run's"; done
[ -z "$(find p -name '*.tmp')" ] || fail "p: .tmp files left"

# 3. An upstream death (truncated stream), --by-bucket and a split run (--part 1/2): the part's
#    series is continued in its own directory; --skip-done reads the part directories.
dec --part 1/2 2>/dev/null | dfm-bucket -q --preset 256p > p12
dfm-shard -q -o b/t-%06d.tar --by-bucket --part 1/2 --max-count 2 p12 2>/dev/null
mv b bref
n=$(wc -c < p12)
head -c $((n * 2 / 3)) p12 | dfm-shard -q -o b/t-%06d.tar --by-bucket --part 1/2 --max-count 2 2>/dev/null && fail "truncated input: exit 0"
dec --part 1/2 --skip-done b 2>derr | dfm-bucket -q --preset 256p |
  dfm-shard -q -o b/t-%06d.tar --by-bucket --part 1/2 --max-count 2 --resume 2>/dev/null
expect_grep 'already in .b. skipped' derr
expect_eq "part series" "$(cd b && find . -type f | sort | tr '\n' ' ')" "$(cd bref && find . -type f | sort | tr '\n' ' ')"
for f in $(cd bref && find . -type f); do cmp -s "bref/$f" "b/$f" || fail "by-bucket part: $f differs"; done

# 4. Frames mode (3 samples a video, keys @f<index>) cut at every shard boundary: the union is the
#    uninterrupted run's.
dfm-decode -q --mode frames --frames 3 data/videos 2>/dev/null | bkt > fr
dfm-shard -q -o fref/t-%06d.tar --max-count 4 fr 2>/dev/null
n=$(wc -c < fr)
head -c $((n / 2)) fr | dfm-shard -q -o f/t-%06d.tar --max-count 4 2>/dev/null || true
dfm-decode -q --mode frames --frames 3 --skip-done f data/videos 2>derr | bkt |
  dfm-shard -q -o f/t-%06d.tar --max-count 4 --resume 2>/dev/null
expect_grep 'already in .f. skipped' derr
for g in fref/*; do cmp -s "$g" "f/$(basename "$g")" || fail "frames: $(basename "$g") differs"; done

# 5. Incremental: new files added to the folder later; the rerun appends only their samples
#    (in new shards), and the union equals a fresh run over the enlarged folder. The last file of
#    the series (street_corner.avi, the frontier) is decoded again and its sample dropped.
cp data/images/alpha_badge.png data/images/aa_new.png
cp data/images/grey_square.png data/videos/zz_new.png
dec --skip-done k 2>derr | bkt | dfm-shard -o k/t-%06d.tar --max-count 5 --resume 2>serr
expect_grep 'read 3, written 2, skipped 0, .* 14 inputs already in .k. skipped, 1 sample already there dropped' derr
expect_grep 'read 2, written 2, .* 1 shard, 4 shards \(16 samples\) kept' serr
dec 2>/dev/null | bkt | dfm-shard -q -o fresh/t-%06d.tar --max-count 5 2>/dev/null
union u1 k/t-*.tar
union u2 fresh/t-*.tar
expect_eq "incremental: members" "$(ls u1 | wc -l)" 54
diff -r u1 u2 >&2 || fail "incremental: the union differs from a fresh run"
# the same samples, grouped otherwise: in the fresh run aa_new.png sorts into the first shard
! cmp -s fresh/t-000000.tar k/t-000000.tar || fail "incremental: the fresh run's first shard is the old one"
expect_eq "incremental: new shard" "$(dfm-shard -q --list k/t-000004.tar 2>/dev/null | cut -f1 | tr '\n' ' ')" \
  "images%2Faa_new%2Epng videos%2Fzz_new%2Epng "
grep -q '"samples": 18' k/index.json && grep -q '"complete": true' k/index.json || fail "index after append: $(cat k/index.json)"
# nothing new: nothing written, the series unchanged
cp -R k k0
dec --skip-done k 2>derr | bkt | dfm-shard -q -o k/t-%06d.tar --max-count 5 --resume 2>/dev/null
expect_grep 'read 1, written 0, .* 16 inputs already in .k. skipped, 1 sample already there dropped' derr
for f in k0/*; do cmp -s "$f" "k/$(basename "$f")" || fail "a rerun with nothing new changed $(basename "$f")"; done

# 6. --resume refuses options that would make it another series; with no series it is a fresh run
for bad in "--max-count 4" "--max-count 5 --max-size 500M" "--max-count 5 --by-bucket"; do
  set +e
  dfm-shard -q -o k/t-%06d.tar $bad --resume < /dev/null 2>err; rc=$?
  set -e
  expect_eq "--resume $bad: exit" $rc 2
  expect_grep "cannot resume from 'k/index.json': the series was written with(out)? " err
done
expect_grep "written without --by-bucket, this run has it" err
set +e
dfm-shard -q -o k/t-%06d.tar.zst --max-count 5 --resume < /dev/null 2>err; rc=$?
set -e
expect_eq "--resume, other compression: exit" $rc 2
expect_grep "written with the pattern 't-%06d.tar', this run has 't-%06d.tar.zst'" err
set +e
dfm-shard -q -o k/t-%06d.tar --resume --overwrite < /dev/null 2>err; rc=$?
set -e
expect_eq "--resume --overwrite: exit" $rc 2
for f in k0/*; do cmp -s "$f" "k/$(basename "$f")" || fail "a refused --resume changed $(basename "$f")"; done
# shards without an index (not written by this dfm-shard): refused
mkdir noidx && cp k/t-000000.tar noidx/
set +e
dfm-shard -q -o noidx/t-%06d.tar --resume < /dev/null 2>err; rc=$?
set -e
expect_eq "--resume without index: exit" $rc 2
expect_grep "no index.json" err
expect_grep "^hint: rerun with the options the series was written with" err
dfm-shard -q -o new/t-%06d.tar --max-count 5 --resume s 2>/dev/null
same_as_ref new
# --skip-done on a directory that does not exist skips nothing
dec --skip-done nowhere 2>derr > /dev/null
expect_grep 'read 17, written 18, .* 0 inputs already in .nowhere. skipped' derr
