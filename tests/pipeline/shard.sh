# dfm-shard: rolling by count and size, index.json, by-bucket, determinism, zstd, --cat.
. "$DFM_TOP/tests/lib.sh"
dfm-decode "$M/images" "$M/videos" 2>/dev/null | dfm-bucket --size 64x64 2>/dev/null > s
dfm-shard -o out/train-%06d.tar --max-count 5 s 2>err
expect_grep 'read 16, written 16, skipped 0, .* 4 shards' err
ls out > names
expect_eq "shard names" "$(tr '\n' ' ' < names)" "index.json train-000000.tar train-000001.tar train-000002.tar train-000003.tar "
python3 -c "import json,sys; j=json.load(open('out/index.json')); assert j['__kind__']=='wids-shard-index-v1'; assert [s['nsamples'] for s in j['shardlist']]==[5,5,5,1], j; assert j['dfm']['samples']==16; assert j['dfm']['fields']['frames.npy']==16" \
  || grep -q '"nsamples": 5' out/index.json || fail "index.json: $(cat out/index.json)"
# members in sample order, KEY.FIELD, mtime 0, mode 0444
tar -tvf out/train-000000.tar | head -n 3 > tv
expect_grep '^-r--r--r-- 0/0 .* 1970-01-01 00:00 images%2Falpha_badge%2Epng.txt$' tv
# deterministic: same input, same bytes
dfm-shard -o again/train-%06d.tar --max-count 5 s 2>/dev/null
for f in out/*.tar; do cmp -s "$f" "again/$(basename "$f")" || fail "$f differs between runs"; done
# --cat gives back the same samples (compare listings)
dfm-shard --list s > l0 2>/dev/null
dfm-shard --cat out/train-00000[0-3].tar 2>/dev/null | dfm-shard --list > l1 2>/dev/null
cmp -s l0 l1 || fail "--cat does not give back the input"
# concatenated tar files on stdin
cat out/train-000000.tar out/train-000001.tar | dfm-shard --list > l2 2>/dev/null
expect_eq "concatenated tar" "$(lines l2)" 10
# --max-size rolls before a shard grows past the size (each 64x64 image sample is ~13 KiB)
dfm-decode "$M/images" 2>/dev/null | dfm-bucket --size 64x64 2>/dev/null | dfm-shard -o sz/x-%03d.tar --max-size 30K 2>/dev/null
n=$(ls sz/*.tar | wc -l)
[ "$n" -ge 6 ] || fail "max-size: only $n shards"
for f in sz/*.tar; do [ $(wc -c < "$f") -le 40000 ] || fail "$f too big"; done
# zstd shards read back the same
dfm-shard -o z/train-%06d.tar.zst --max-count 100 s 2>/dev/null
head -c 4 z/train-000000.tar.zst | od -An -tx1 | grep -q '28 b5 2f fd' || fail "not zstd"
dfm-shard --list z/train-000000.tar.zst > l3 2>/dev/null
cmp -s l0 l3 || fail "zstd shard round trip"
# by bucket: one series per WxHxF
dfm-decode "$M/images" 2>/dev/null | dfm-bucket --preset 256p 2>/dev/null | dfm-shard -o bb/part-%04d.tar --by-bucket 2>/dev/null
[ -f bb/256x256x1/part-0000.tar ] || fail "by-bucket: $(find bb | sort | tr '\n' ' ')"
[ -f bb/index.json ] || fail "by-bucket index"
grep -q '"bucket": "256x256x1"' bb/index.json || fail "index bucket: $(cat bb/index.json)"
# no .tmp files are left behind
[ -z "$(find . -name '*.tmp')" ] || fail "left .tmp files"
# bad pattern is a usage error
set +e
dfm-shard -o out/train.tar < s > /dev/null 2>err; rc=$?
set -e
expect_eq "bad pattern exit" $rc 2
# Two runs never mix: a rerun into a series that has shards (or .tmp files of it, or an index)
# is refused with a hint; --overwrite removes the old series first, so fewer samples leave no
# stale shard behind for 'train-*.tar' to find. Also for .tar.zst and --by-bucket series.
set +e
dfm-shard -o out/train-%06d.tar --max-count 5 s 2>err; rc=$?
set -e
expect_eq "rerun refused" $rc 1
expect_grep "error: 'out/index.json' and 4 more files already exist, from an earlier run of the series 'train-%06d.tar'" err
expect_grep "^hint: pass --overwrite" err
dfm-decode "$M/images/wide" 2>/dev/null > few
dfm-shard -o out/train-%06d.tar --max-count 1 --overwrite few 2>err
expect_grep 'read 2, written 2, skipped 0, .* 2 shards' err
expect_eq "after --overwrite" "$(ls out | tr '\n' ' ')" "index.json train-000000.tar train-000001.tar "
expect_eq "globbing finds only the new run" "$(dfm-shard --list out/train-*.tar 2>/dev/null | wc -l | tr -d ' ')" 2
# the other compression, a stale .tmp, a lone index.json, a bucket directory: all the same series
for stale in train-000007.tar.zst train-000003.tar.tmp index.json 64x64x1/train-000000.tar; do
  rm -rf st; mkdir -p st/64x64x1; : > "st/$stale"
  set +e
  dfm-shard -o st/train-%06d.tar few 2>err; rc=$?
  set -e
  expect_eq "stale $stale refused" $rc 1
  expect_grep "'st/$stale' already exists" err
  dfm-shard -o st/train-%06d.tar --overwrite few 2>/dev/null
  [ ! -e "st/$stale" ] || [ "$stale" = index.json ] || fail "--overwrite left st/$stale"
done
set +e
dfm-shard -o bb/part-%04d.tar.zst --by-bucket few 2>err; rc=$?
set -e
expect_eq "by-bucket .tar.zst over a by-bucket .tar series" $rc 1
expect_grep "already exist" err
# unrelated files next to a series are never touched
: > out/notes.txt; : > out/val-000000.tar
dfm-shard -o out/train-%06d.tar --overwrite few 2>/dev/null
[ -f out/notes.txt ] && [ -f out/val-000000.tar ] || fail "--overwrite removed other files"
