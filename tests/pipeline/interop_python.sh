# Python's webdataset reads our tar shards and msgpack + numpy read our streams, with no custom
# decoder. Skips (77) when python3 lacks webdataset, msgpack or numpy.
. "$DFM_TOP/tests/lib.sh"
python3 -c "import webdataset, msgpack, numpy" 2>/dev/null || { echo "python3 lacks webdataset/msgpack/numpy"; exit 77; }
dfm-decode "$M/images" "$M/videos/night_drive.mkv" 2>/dev/null | dfm-bucket --preset 256p 2>/dev/null > s.mp
n=$(dfm-shard --list s.mp 2>/dev/null | wc -l | tr -d ' ')
dfm-shard -o shards/train-%06d.tar --max-count 100 s.mp 2>/dev/null
python3 "$DFM_TOP/tests/interop/check_python.py" --tar shards/train-000000.tar --msgpack s.mp \
  --expect-keys "$n" --expect-fields txt,json,frames.npy
