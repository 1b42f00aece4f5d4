# dfm-shard --energon: megatron-energon (the real package) opens our shards as they are, with no
# `energon prepare` run, and the wids reader opens index.json.
#   1. dfm-decode | dfm-bucket | dfm-shard --energon --by-bucket, one key long enough for pax
#      headers: Energon's loader reads every sample of the train split once, with the fields and
#      bytes Python's tarfile finds in the shards (tests/interop/check_energon.py); wids reads
#      the same samples over index.json (without the long key: wids reads ustar names only)
#   2. the files equal what `energon prepare` itself writes over the same shards: every
#      SHARD.tar.idx byte for byte, the index.sqlite rows, .info.json's shard_counts
#   3. --energon-split 1,1,1 puts a third of the shards in each split; a split part of 3 runs
#      and --merge-index --energon make the merged folder one dataset; --energon-prepare DIR
#      keeps a user's dataset.yaml
#   4. errors: --energon with a .tar.zst pattern (exit 2); a duplicate key (exit 1)
# Python: $DFM_PYTHON, else python3; skips (77) when it cannot import megatron.energon (e.g.
# DFM_PYTHON=/tmp/venv-energon/bin/python); the wids checks run when it can import wids.
. "$DFM_TOP/tests/lib.sh"
py=${DFM_PYTHON:-python3}
"$py" -c "import megatron.energon" 2>/dev/null || { echo "$py cannot import megatron.energon (pip install megatron-energon, or set DFM_PYTHON)"; exit 77; }
check="$DFM_TOP/tests/interop/check_energon.py"
wids=""
"$py" -c "import wids" 2>/dev/null && wids=--wids || echo "note: $py cannot import wids; the wids checks are skipped" >&2
code() { set +e; "$@" > out 2> err; echo $?; set -e; }

# 1. one series per bucket, several shards each
# one key longer than a ustar name (100 bytes): its members get pax headers, which energon
# prepare's offsets (and ours) must count as part of the sample
long=a_directory_with_a_name_long_enough_that_the_escaped_sample_key_needs_a_pax_header_in_the_tar
mkdir "$long"
cp "$(ls "$M"/images/*.jpg | head -1)" "$long/"
dfm-decode "$M/images" 2>/dev/null | dfm-bucket --preset 256p 2>/dev/null > s.mp
dfm-decode "$M/images" "$long" 2>/dev/null | dfm-bucket --preset 256p 2>/dev/null > sl.mp
n=$(dfm-shard --list s.mp 2>/dev/null | wc -l | tr -d ' ')
nl=$(dfm-shard --list sl.mp 2>/dev/null | wc -l | tr -d ' ')
[ "$n" -ge 6 ] || fail "want at least 6 samples from the test images, got $n"
expect_eq "samples with the long key" "$nl" $((n + 1))
dfm-shard -o ds/train-%06d.tar --max-count 2 --by-bucket --energon sl.mp 2> err || { cat err; fail "dfm-shard --energon"; }
expect_grep "energon: [0-9]+ shards \(train [0-9]+, val 0, test 0\), $nl samples, in 'ds/.nv-meta'" err
for f in .info.json split.yaml dataset.yaml index.sqlite index.uuid; do
  [ -s "ds/.nv-meta/$f" ] || fail "ds/.nv-meta/$f missing"
done
"$py" "$check" ds --expect-samples "$nl" --expect-fields txt,json,frames.npy 2> err || { cat err; fail "energon read"; }
# wids (its tar indexer reads the 100-byte ustar name only, not a pax path: no long key here)
dfm-shard -o w/train-%06d.tar --max-count 2 --by-bucket --energon s.mp 2> err || { cat err; fail "dfm-shard --energon"; }
"$py" "$check" w --expect-samples "$n" --expect-fields txt,json,frames.npy $wids 2> err || { cat err; fail "energon/wids read"; }

# 2. what energon prepare writes over the same shards
mkdir ref
(cd ds && find . -name '*.tar' | while read -r t; do mkdir -p "../ref/$(dirname "$t")"; cp "$t" "../ref/$t"; done)
"$py" -c "from megatron.energon.cli.main import main; main()" prepare --non-interactive \
  --split-ratio 1,0,0 --sample-type CrudeWebdataset --no-progress --num-workers 1 ref > out 2>&1 ||
  { cat out; fail "energon prepare"; }
k=0
for t in $(cd ds && find . -name '*.tar'); do
  cmp "ds/$t.idx" "ref/$t.idx" || fail "$t.idx differs from energon prepare's"
  k=$((k + 1))
done
[ "$k" -ge 3 ] || fail "want at least 3 shards, got $k"
for t in $(cd ds && find . -name '*.tar'); do tar -tvf "ds/$t"; done | grep -q "$long" || fail "no member of the long key"
"$py" - <<'PY' || fail "index.sqlite or .info.json differs from energon prepare's"
import json, sqlite3
def rows(d):
    db = sqlite3.connect(d + "/.nv-meta/index.sqlite")
    names = json.load(open(d + "/.nv-meta/.info.json"))["shard_counts"]
    ids = {i: n for i, n in enumerate(names)}  # tar_file_id -> shard name, in .info.json order
    s = sorted((ids[r[0]],) + r[1:] for r in db.execute("SELECT * FROM samples"))
    p = sorted((ids[r[0]],) + r[1:] for r in db.execute("SELECT * FROM sample_parts"))
    return names, s, p
a, b = rows("ds"), rows("ref")
assert a[0] == b[0], (a[0], b[0])
assert a[1] == b[1] and a[2] == b[2]
assert len(a[1]) > 0 and len(a[2]) == 3 * len(a[1])
PY

# 3. splits; parts merged; a user's dataset.yaml kept
dfm-shard -o sp/train-%06d.tar --max-count 2 --energon --energon-split 1,1,1 s.mp 2> err || { cat err; fail "--energon-split"; }
ns=$(ls sp/*.tar | wc -l | tr -d ' ')
expect_grep "energon: $ns shards \(train $((ns / 3)), val $((ns * 2 / 3 - ns / 3)), test $((ns - ns * 2 / 3))\)" err
"$py" - "$ns" <<'PY' || fail "split.yaml"
import sys, yaml
y = yaml.safe_load(open("sp/.nv-meta/split.yaml"))
n = int(sys.argv[1])
assert [len(y["split_parts"][k]) for k in ("train", "val", "test")] == [n // 3, n * 2 // 3 - n // 3, n - n * 2 // 3], y
assert y["exclude"] == []
PY
for p in 0 1 2; do
  dfm-shard --cat --part $p/3 s.mp 2>/dev/null | dfm-shard -o parts/train-%06d.tar --max-count 2 --part $p/3 2>/dev/null
done
dfm-shard --merge-index parts --energon 2> err || { cat err; fail "--merge-index --energon"; }
expect_grep "energon: [0-9]+ shards .*, $n samples, in 'parts/.nv-meta'" err
printf '__module__: megatron.energon\n__class__: CrudeWebdataset\nsubflavors:\n  mine: 1\n' > parts/.nv-meta/dataset.yaml
dfm-shard --energon-prepare parts 2> err || { cat err; fail "--energon-prepare"; }
expect_grep "its dataset.yaml kept" err
expect_grep "mine: 1" parts/.nv-meta/dataset.yaml
"$py" "$check" parts --expect-samples "$n" --expect-fields txt,json,frames.npy $wids 2> err || { cat err; fail "energon read of the merged parts"; }

# 4. errors
expect_eq "--energon with .tar.zst" "$(code dfm-shard -o z/t-%06d.tar.zst --energon s.mp)" 2
expect_grep "plain .tar" err
mkdir dup
cp ds/.nv-meta/../*/train-000000.tar dup/a-000000.tar 2>/dev/null || cp "$(find ds -name '*.tar' | head -1)" dup/a-000000.tar
cp dup/a-000000.tar dup/a-000001.tar
printf '{"__kind__": "wids-shard-index-v1", "wids_version": 1, "shardlist": [{"url": "a-000000.tar", "nsamples": %s}, {"url": "a-000001.tar", "nsamples": %s}]}\n' \
  "$(tar -tf dup/a-000000.tar | sed 's/\..*//' | uniq | wc -l)" "$(tar -tf dup/a-000000.tar | sed 's/\..*//' | uniq | wc -l)" > dup/index.json
expect_eq "duplicate keys" "$(code dfm-shard --energon-prepare dup)" 1
expect_grep "appears twice" err
[ ! -e dup/.nv-meta/.info.json ] || fail "a failed prepare left .info.json"
