# Python's webdataset reads our tar shards and msgpack + numpy read our streams, with no custom
# decoder; the msgpack control records (formats/sample-stream.md §2.1) are skipped the documented
# way and a cut stream is seen as cut; streams written by plain Python (no control records) and
# by Python following the recipe are read by dfm. Skips (77) when python3 lacks webdataset,
# msgpack or numpy.
. "$DFM_TOP/tests/lib.sh"
python3 -c "import webdataset, msgpack, numpy" 2>/dev/null || { echo "python3 lacks webdataset/msgpack/numpy"; exit 77; }
check="$DFM_TOP/tests/interop/check_python.py"
dfm-decode "$M/images" "$M/videos/night_drive.mkv" 2>/dev/null | dfm-bucket --preset 256p 2>/dev/null > s.mp
n=$(dfm-shard --list s.mp 2>/dev/null | wc -l | tr -d ' ')
dfm-shard -o shards/train-%06d.tar --max-count 100 s.mp 2>/dev/null
python3 "$check" --tar shards/train-000000.tar --msgpack s.mp --plain-reader s.mp \
  --expect-keys "$n" --expect-fields txt,json,frames.npy
# without its end record ({"__dfm_end__": N} is 14 bytes here) Python sees the stream cut short
head -c $(($(wc -c < s.mp) - 14)) s.mp > cut.mp
python3 "$check" --msgpack cut.mp --expect-truncated --expect-keys "$n"

# Python writers: plain maps (no control records) are a complete stream for dfm; with the begin
# record and no end record, dfm reports the truncation
cat > w.py <<'PY'
import sys, msgpack
mode = sys.argv[1]
out = sys.stdout.buffer
if mode != "plain":
    out.write(msgpack.packb({"__dfm_stream__": 1}))
for i in range(3):
    out.write(msgpack.packb({"__key__": f"py{i}", "txt": f"caption {i}", "json": b"{}"}, use_bin_type=True))
if mode == "whole":
    out.write(msgpack.packb({"__dfm_end__": 3}))
PY
for mode in plain whole; do
  python3 w.py $mode | dfm-shard --list > l 2>err || { cat err; fail "python $mode stream refused"; }
  expect_eq "python $mode samples" "$(lines l)" 3
done
set +e
python3 w.py cut | dfm-shard --list > l 2>err; rc=$?
set -e
expect_eq "python cut stream exit" $rc 1
expect_grep "input truncated \(did the previous stage fail\?\)" err
expect_eq "python cut stream: samples before the cut" "$(lines l)" 3
