"""Open a dfm-shard --energon dataset with the real megatron-energon (no `energon prepare` run) and
check it against the shards read independently by Python's tarfile: every sample comes back once,
with the same keys and the same bytes in every field. Also the wids reader over index.json.

usage: check_energon.py DIR --expect-samples N --expect-fields a,b,c [--split-part train]
                        [--wids]
Exit 0 on success; a message and exit 1 otherwise."""
import argparse
import json
import os
import sys
import tarfile
from dataclasses import dataclass


def fail(msg):
    print("check_energon: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def tar_samples(path):
    """key -> {part: bytes} as Energon names them (key up to the first dot of the file name)."""
    out = {}
    with tarfile.open(path) as tf:
        for m in tf:
            if not m.isreg():
                continue
            base = os.path.basename(m.name)
            d = os.path.dirname(m.name)
            k, _, part = base.partition(".")
            key = (d + "/" if d else "") + k
            out.setdefault(key, {})[part] = tf.extractfile(m).read()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--expect-samples", type=int, required=True)
    ap.add_argument("--expect-fields", required=True)
    ap.add_argument("--split-part", default="train")
    ap.add_argument("--wids", action="store_true")
    a = ap.parse_args()
    fields = set(a.expect_fields.split(","))

    info = json.load(open(os.path.join(a.dir, ".nv-meta", ".info.json")))
    ref = {}
    for shard in info["shard_counts"]:
        ref.update(tar_samples(os.path.join(a.dir, shard)))
    if len(ref) != a.expect_samples:
        fail(f"the shards hold {len(ref)} samples, want {a.expect_samples}")

    from megatron.energon import (Cooker, DefaultTaskEncoder, Sample, WorkerConfig, get_loader,
                                  basic_sample_keys, get_val_dataset, stateless)

    @dataclass
    class Raw(Sample):
        parts: dict

    @stateless
    def cook(raw: dict) -> Raw:
        return Raw(**basic_sample_keys(raw), parts={k: v for k, v in raw.items() if not k.startswith("__")})

    class Encoder(DefaultTaskEncoder):
        decoder = None  # raw bytes, to compare with the tar's
        cookers = [Cooker(cook)]

        def batch(self, samples):
            return samples

    wc = WorkerConfig(rank=0, world_size=1, num_workers=0)
    ds = get_val_dataset(a.dir, split_part=a.split_part, worker_config=wc, batch_size=1,
                         task_encoder=Encoder())
    seen = {}
    for batch in get_loader(ds):
        for s in batch:
            if s.__key__ in seen:
                fail(f"sample {s.__key__!r} came twice")
            seen[s.__key__] = s.parts
    total = sum(info["shard_counts"].values())
    if len(seen) != total:
        fail(f"energon read {len(seen)} samples from split {a.split_part!r}, the dataset holds {total}")
    for key, parts in seen.items():
        if key not in ref:
            fail(f"energon key {key!r} is not in the shards")
        if set(parts) != set(ref[key]) or set(parts) != fields:
            fail(f"{key!r}: energon fields {sorted(parts)}, tar {sorted(ref[key])}, want {sorted(fields)}")
        for f, b in parts.items():
            if bytes(b) != ref[key][f]:
                fail(f"{key!r}.{f}: energon's bytes differ from the tar's")
    print(f"check_energon: energon read {len(seen)} samples, fields {sorted(fields)}, bytes equal")

    if a.wids:
        import tempfile
        os.environ["WIDS_CACHE"] = tempfile.mkdtemp()  # wids copies local shards there
        import wids
        # no transformations: the fields stay bytes, compared with the tar's. No cache_dir: wids
        # would then name its copies by file name alone, and the shards of two buckets (or parts)
        # with the same file name would collide (WIDS_CACHE names them by the whole url).
        ds = wids.ShardListDataset(os.path.join(a.dir, "index.json"), transformations=[])
        if len(ds) != a.expect_samples:
            fail(f"wids sees {len(ds)} samples, want {a.expect_samples}")
        got = set()
        for i in range(len(ds)):
            s = ds[i]
            key = s["__key__"]
            got.add(key)
            if key not in ref:
                fail(f"wids key {key!r} is not in the shards")
            for f in fields:
                v = s.get("." + f)
                if v is None:
                    fail(f"wids sample {key!r} lacks .{f}")
                if hasattr(v, "read"):
                    v = v.read()
                if bytes(v) != ref[key][f]:
                    fail(f"wids {key!r}.{f}: bytes differ from the tar's")
        if got != set(ref):
            fail("wids keys differ from the shards' keys")
        print(f"check_energon: wids read {len(ds)} samples over index.json")


main()
