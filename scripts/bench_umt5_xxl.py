#!/usr/bin/env python3
"""UMT5-XXL at full size on this machine: writes a random UMT5-XXL encoder (24 layers, d_model
4096, 64 heads x 64, d_ff 10240, vocab 256384: 5.7 B parameters, the shapes and tensor names of
Wan 2.1's text_encoder/) as bf16 safetensors shards with a model.safetensors.index.json, the way
save_pretrained shards it, then loads it with dfm's encoder (scripts/bench_umt5.c) in bf16 mode
and prints load seconds, encode seconds and memory for a few caption lengths.

No torch needed (numpy writes the files: 11.5 GB in WORKDIR/umt5_xxl_bf16, written once and
reused); transformers is not run (its fp32 model needs 23 GB). Weights: normal, std 0.05 for the
GEMMs and the bias table, 1 for the embedding, norms 1 - values do not change the timing.

usage: bench_umt5_xxl.py [WORKDIR] [--threads N] [--tokens 32,128,512] [--reps N] [--no-make]"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_umt5 import build_driver, parse_kv  # noqa: E402

D, DKV, H, FF, L, V, NB = 4096, 64, 64, 10240, 24, 256384, 32


def tensors():
    """(name, shape, kind) in save_pretrained's order; kind: 'w' GEMM, 'e' embedding, 'n' norm, 'b' bias."""
    yield "shared.weight", (V, D), "e"
    for i in range(L):
        p = f"encoder.block.{i}.layer.0."
        for n in ("q", "k", "v"):
            yield p + f"SelfAttention.{n}.weight", (H * DKV, D), "w"
        yield p + "SelfAttention.o.weight", (D, H * DKV), "w"
        yield p + "SelfAttention.relative_attention_bias.weight", (NB, H), "b"
        yield p + "layer_norm.weight", (D,), "n"
        p = f"encoder.block.{i}.layer.1."
        yield p + "DenseReluDense.wi_0.weight", (FF, D), "w"
        yield p + "DenseReluDense.wi_1.weight", (FF, D), "w"
        yield p + "DenseReluDense.wo.weight", (D, FF), "w"
        yield p + "layer_norm.weight", (D,), "n"
    yield "encoder.final_layer_norm.weight", (D,), "n"


def bf16_bytes(a):
    """float32 array -> bf16 bytes, round to nearest even."""
    u = a.astype(np.float32).view(np.uint32)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16).tobytes()


def write_model(path, shard_bytes=2 << 30):
    if os.path.exists(os.path.join(path, "model.safetensors.index.json")):
        return
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(0)
    # group tensors into shards of about shard_bytes
    shards, cur, size = [], [], 0
    for name, shape, kind in tensors():
        nbytes = int(np.prod(shape)) * 2
        if cur and size + nbytes > shard_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape, kind))
        size += nbytes
    shards.append(cur)
    weight_map = {}
    total = 0
    for si, shard in enumerate(shards):
        fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, _ in shard:
            n = int(np.prod(shape)) * 2
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        tmp = os.path.join(path, fname + ".tmp")
        print(f"bench_umt5_xxl: writing {fname} ({off / 2**30:.1f} GiB)", file=sys.stderr)
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb)
            for name, shape, kind in shard:
                rows = shape[0]
                step = max(1, (64 << 20) // (4 * int(np.prod(shape[1:])) if len(shape) > 1 else 1))
                for r0 in range(0, rows, step):
                    sub = (min(step, rows - r0),) + tuple(shape[1:])
                    if kind == "n":
                        a = np.ones(sub, np.float32)
                    else:
                        a = rng.standard_normal(sub, dtype=np.float32) * (1.0 if kind == "e" else 0.05)
                    f.write(bf16_bytes(a))
        os.replace(tmp, os.path.join(path, fname))
        total += off
    cfg = {"architectures": ["UMT5EncoderModel"], "model_type": "umt5", "d_model": D, "d_kv": DKV, "num_heads": H,
           "d_ff": FF, "num_layers": L, "vocab_size": V, "relative_attention_num_buckets": NB,
           "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-6,
           "torch_dtype": "bfloat16"}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="?", default=os.path.join(ROOT, "bench-out"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokens", default="32,128,512")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--no-make", action="store_true")
    a = ap.parse_args()
    model = os.path.join(a.work, "umt5_xxl_bf16")
    write_model(model)
    exe = build_driver(a.work, not a.no_make)
    print(f"UMT5-XXL, full size (24 layers, 5.7 B parameters, random bf16 weights in {len(os.listdir(model)) - 2} "
          f"shards), dfm bf16, {a.threads} threads; memory from /proc/self/status")
    print(f"  {'tokens':>6s} {'load s':>7s} {'encode s':>9s} {'GFLOP/s':>8s} {'peak MiB':>9s} {'anon MiB':>9s} "
          f"{'file MiB':>9s}")
    for n in (int(t) for t in a.tokens.split(",")):
        ids = np.random.default_rng(n).integers(2, V, size=n).astype(np.int32)
        ids[-1] = 1
        ids_path = os.path.join(a.work, f"umt5_xxl_ids_{n}.npy")
        np.save(ids_path, ids)
        out = os.path.join(a.work, "umt5_xxl_out.npy")
        r = subprocess.run([exe, model, ids_path, out, "--threads", str(a.threads), "--reps", str(a.reps),
                            "--dtype", "bf16"], check=True, capture_output=True, text=True)
        res = parse_kv(r.stdout.strip().splitlines()[-1])
        y = np.load(out)
        assert y.shape == (n, D) and np.isfinite(y).all(), "non-finite output"
        gflop = L * (2 * n * (4 * D * H * DKV + 3 * D * FF) + 4 * n * n * H * DKV) / 1e9
        print(f"  {n:6d} {res['load_s']:7.1f} {res['encode_s']:9.2f} {gflop / res['encode_s']:8.1f} "
              f"{res['hwm_mib']:9.0f} {res['anon_after_encode_mib']:9.0f} {res['file_after_encode_mib']:9.0f}")
    print("  peak = VmHWM (allocated + mapped file pages, which the kernel may drop); anon = allocated after the "
          "encode (packed bf16 weights + activations); file = mapped pages still resident (the embedding rows read)")


if __name__ == "__main__":
    main()
