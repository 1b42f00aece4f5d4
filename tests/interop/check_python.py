#!/usr/bin/env python3
"""check_python.py — do Python's own readers read what dfm writes? (formats/sample-stream.md)

    python3 tests/interop/check_python.py --tar X.tar --msgpack X.mp --expect-keys N \
        [--expect-fields txt,json,frames.npy] [--expect-json expect.json]

  --tar PATH       a tar shard (plain or .tar.zst): read with webdataset.WebDataset(PATH,
                   shardshuffle=False) and no decoder (raw bytes per field), then again with
                   .decode() (txt -> str, json -> object, npy -> ndarray).
  --msgpack PATH   a msgpack sample stream (plain or zstd, "-" = stdin): read with
                   msgpack.Unpacker(raw=False, max_buffer_size=0), skipping dfm's control
                   records (maps without "__key__": {"__dfm_stream__": 1} first and
                   {"__dfm_end__": N} last) as formats/sample-stream.md §2.1 shows; every .npy
                   field goes through numpy.load(io.BytesIO(...), allow_pickle=False).
  --expect-truncated   the msgpack stream must be seen as cut short (begin record, no end record)
  --plain-reader PATH  read PATH with the naive loop a Python user writes without knowing about
                   control records (rec["__key__"] for every record) and show it fails, so the
                   skip in dfm_samples() is needed
  Both given: the two must hold the same samples (keys, order, field names, bytes).
  --expect-keys N      number of samples
  --expect-fields a,b  fields every sample must have
  --expect-json FILE   {"KEY": {"FIELD": {"len": n, "sha256": hex, "dtype": "<f4",
                        "shape": [..], "text": "..."}}} — every entry given is checked
Prints what it checked; exits 0 when everything matched, 1 on a mismatch, 2 on bad usage.
Python is only a checker here: nothing in dfm needs it at run time.
"""
import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
failures = []


def fail(msg):
    failures.append(msg)
    print("MISMATCH: " + msg)


def decompressed(path, tmpdir):
    """path itself, or a decompressed copy when the bytes are zstd (Python's tarfile reads zstd
    only from 3.14 on, so we go through the zstd program)."""
    if path == "-":
        data = sys.stdin.buffer.read()
        path = os.path.join(tmpdir, "stdin")
        with open(path, "wb") as f:
            f.write(data)
    with open(path, "rb") as f:
        head = f.read(4)
    if head != ZSTD_MAGIC:
        return path, False
    out = os.path.join(tmpdir, os.path.basename(path) + ".plain")
    subprocess.run(["zstd", "-q", "-d", "-f", path, "-o", out], check=True)
    return out, True


def load_npy(where, data):
    import numpy as np

    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - report any failure as a mismatch
        fail(f"{where}: numpy cannot load it: {e}")
        return None


def read_tar(path, tmpdir):
    import webdataset as wds

    plain, z = decompressed(path, tmpdir)
    samples = []
    for s in wds.WebDataset(plain, shardshuffle=False):
        key = s["__key__"]
        fields = {}
        for name, value in s.items():
            if name.startswith("__"):
                continue
            if not isinstance(value, bytes):
                fail(f"tar {path}: sample '{key}' field '{name}' is {type(value).__name__}, not bytes")
                continue
            fields[name] = value
        samples.append((key, fields))
    # the default decoders: txt -> str, json -> object, npy -> ndarray
    decoded = 0
    import numpy as np

    for s in wds.WebDataset(plain, shardshuffle=False).decode():
        for name, value in s.items():
            if name.startswith("__"):
                continue
            last = name.rsplit(".", 1)[-1]
            want = {"txt": str, "json": (dict, list), "npy": np.ndarray}.get(last)
            if want and not isinstance(value, want):
                fail(f"tar {path}: webdataset decoded '{s['__key__']}.{name}' to "
                     f"{type(value).__name__}")
            decoded += 1
    print(f"tar {path}{' (zstd)' if z else ''}: webdataset read {len(samples)} samples; "
          f".decode() gave {decoded} fields of the expected Python types")
    return samples


class Truncated(Exception):
    pass


def dfm_samples(f):
    """The reader recipe of formats/sample-stream.md §2.1: yield the sample maps of a msgpack
    stream, skip dfm's control records, and raise Truncated when a stream that began with
    {"__dfm_stream__": 1} ends without its {"__dfm_end__": N} (an earlier stage died).
    Streams without control records (other writers) simply end at their last byte."""
    import msgpack

    open_count = None  # samples since the begin record; None = no end record promised
    for rec in msgpack.Unpacker(f, raw=False, max_buffer_size=0):
        if isinstance(rec, dict) and "__key__" not in rec:
            if "__dfm_stream__" in rec:
                if open_count is not None:
                    raise Truncated("a new stream begins before the end record")
                open_count = 0
            elif "__dfm_end__" in rec:
                if open_count is None or rec["__dfm_end__"] != open_count:
                    raise ValueError(f"end record {rec} does not match {open_count} samples")
                open_count = None
            else:
                yield rec  # not ours: the caller reports the missing key
            continue
        if open_count is not None:
            open_count += 1
        yield rec
    if open_count is not None:
        raise Truncated(f"no end record after {open_count} samples (did the writer fail?)")


def read_msgpack(path, tmpdir, expect_truncated=False):
    plain, z = decompressed(path, tmpdir)
    samples = []
    truncated = False
    with open(plain, "rb") as f:
        records = dfm_samples(f)
        i = -1
        while True:
            try:
                rec = next(records)
            except StopIteration:
                break
            except Truncated as e:
                truncated = True
                print(f"msgpack {path}: truncated: {e}")
                break
            i += 1
            if not isinstance(rec, dict):
                fail(f"msgpack {path}: record {i} is {type(rec).__name__}, not a map")
                continue
            key = rec.get("__key__")
            if not isinstance(key, str):
                fail(f"msgpack {path}: record {i} has no str '__key__'")
                continue
            fields = {}
            for name, value in rec.items():
                if name == "__key__":
                    continue
                if not isinstance(value, bytes):
                    fail(f"msgpack {path}: sample '{key}' field '{name}' is "
                         f"{type(value).__name__}, not bytes (bin)")
                    continue
                fields[name] = value
            samples.append((key, fields))
    npys = 0
    for key, fields in samples:
        for name, value in fields.items():
            if name.endswith(".npy"):
                if load_npy(f"msgpack {path}: '{key}.{name}'", value) is not None:
                    npys += 1
    if truncated != expect_truncated:
        fail(f"msgpack {path}: {'seen as truncated' if truncated else 'not seen as truncated'}, "
             f"expected {'truncated' if expect_truncated else 'a complete stream'}")
    print(f"msgpack {path}{' (zstd)' if z else ''}: msgpack.Unpacker read {len(samples)} samples "
          f"(control records skipped, {'cut short' if truncated else 'complete'}); "
          f"numpy loaded {npys} .npy fields")
    return samples


def plain_reader(path, tmpdir):
    """What a reader that ignores control records does: it must stumble on the first record."""
    import msgpack

    plain, _ = decompressed(path, tmpdir)
    with open(plain, "rb") as f:
        try:
            for rec in msgpack.Unpacker(f, raw=False, max_buffer_size=0):
                rec["__key__"]
        except KeyError:
            print(f"plain reader on {path}: KeyError on a control record, as expected; "
                  f"readers skip maps without '__key__'")
            return
    fail(f"plain reader on {path}: read every record without meeting a control record")


def check_npy_fields(label, samples):
    for key, fields in samples:
        for name, value in fields.items():
            if name.endswith(".npy"):
                load_npy(f"{label}: '{key}.{name}'", value)


def check_expectations(label, samples, args, expect):
    if args.expect_keys is not None and len(samples) != args.expect_keys:
        fail(f"{label}: {len(samples)} samples, expected {args.expect_keys}")
    keys = [k for k, _ in samples]
    if len(set(keys)) != len(keys):
        fail(f"{label}: duplicate keys")
    want_fields = [f for f in (args.expect_fields or "").split(",") if f]
    for key, fields in samples:
        for f in want_fields:
            if f not in fields:
                fail(f"{label}: sample '{key}' lacks field '{f}'")
    by_key = dict(samples)
    for key, fspec in (expect or {}).items():
        if key not in by_key:
            fail(f"{label}: no sample '{key}'")
            continue
        for name, spec in fspec.items():
            value = by_key[key].get(name)
            if value is None:
                fail(f"{label}: sample '{key}' lacks field '{name}'")
                continue
            if "len" in spec and len(value) != spec["len"]:
                fail(f"{label}: '{key}.{name}' is {len(value)} bytes, expected {spec['len']}")
            if "sha256" in spec and hashlib.sha256(value).hexdigest() != spec["sha256"]:
                fail(f"{label}: '{key}.{name}' has the wrong sha256")
            if "text" in spec and value.decode("utf-8", "replace") != spec["text"]:
                fail(f"{label}: '{key}.{name}' text differs")
            if "dtype" in spec or "shape" in spec:
                a = load_npy(f"{label}: '{key}.{name}'", value)
                if a is not None:
                    if "dtype" in spec and a.dtype.str != spec["dtype"]:
                        fail(f"{label}: '{key}.{name}' dtype {a.dtype.str}, expected {spec['dtype']}")
                    if "shape" in spec and list(a.shape) != list(spec["shape"]):
                        fail(f"{label}: '{key}.{name}' shape {list(a.shape)}, "
                             f"expected {spec['shape']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tar")
    ap.add_argument("--msgpack")
    ap.add_argument("--expect-keys", type=int)
    ap.add_argument("--expect-fields")
    ap.add_argument("--expect-json")
    ap.add_argument("--expect-truncated", action="store_true")
    ap.add_argument("--plain-reader")
    args = ap.parse_args()
    if not args.tar and not args.msgpack and not args.plain_reader:
        ap.error("give --tar, --msgpack and/or --plain-reader")
    expect = None
    if args.expect_json:
        with open(args.expect_json) as f:
            expect = json.load(f)
    with tempfile.TemporaryDirectory() as tmpdir:
        tar = read_tar(args.tar, tmpdir) if args.tar else None
        mp = read_msgpack(args.msgpack, tmpdir, args.expect_truncated) if args.msgpack else None
        if args.plain_reader:
            plain_reader(args.plain_reader, tmpdir)
    for label, samples in (("tar", tar), ("msgpack", mp)):
        if samples is not None:
            check_expectations(label, samples, args, expect)
    if tar is not None:
        check_npy_fields("tar", tar)
    if tar is not None and mp is not None:
        if [k for k, _ in tar] != [k for k, _ in mp]:
            fail("tar and msgpack hold different keys or orders")
        for (k, a), (_, b) in zip(tar, mp):
            if set(a) != set(b):
                fail(f"sample '{k}': tar fields {sorted(a)} != msgpack fields {sorted(b)}")
            for name in set(a) & set(b):
                if a[name] != b[name]:
                    fail(f"sample '{k}': field '{name}' differs between tar and msgpack")
        print(f"tar and msgpack: the same {len(tar)} samples, field for field")
    checked = []
    if args.expect_keys is not None:
        checked.append(f"{args.expect_keys} keys")
    if args.expect_fields:
        checked.append(f"fields {args.expect_fields}")
    if expect:
        checked.append(f"{sum(len(v) for v in expect.values())} expected field specs")
    if checked:
        print("expectations: " + ", ".join(checked))
    if failures:
        print(f"check_python: FAILED ({len(failures)} mismatches)")
        return 1
    print("check_python: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
