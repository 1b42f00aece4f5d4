#!/usr/bin/env python3
"""check-wan-save.py: check a transformer directory written by dfm (dfm_wan_transformer_save)
with diffusers itself.

    check-wan-save.py DIR ORIG_DIR [--bf16] [--max-rel X]

Loads DIR and ORIG_DIR (the directory the model was loaded from: a diffusers transformer/
directory) with WanTransformer3DModel.from_pretrained(..., output_loading_info=True) and checks:
  * DIR loads with no missing, unexpected or mismatched keys and no error;
  * both configs are the same (every field but _diffusers_version);
  * the same parameter names, shapes and dtypes; the values are compared (equal when DIR was saved
    in the dtype the model is loaded in);
  * the forward on fixed random inputs (seed 0) agrees to --max-rel (max |a - b| / max |b|;
    default 0: bit for bit).
--bf16 loads both with torch_dtype=torch.bfloat16 (a dfm BF16 save then matches the original's
bf16 load exactly: keep-in-fp32 modules F32, the rest rounded to nearest even). Weights are
copied to fresh memory first (mmapped safetensors sit at unaligned addresses, which sends torch's
CPU GEMM down another path). Exit status 0 when every check passes. Not part of `make test`:
it needs torch and diffusers (diffusers 0.42).
"""
import argparse
import json
import os
import sys

import torch
from diffusers import WanTransformer3DModel


def load(path, dtype):
    kw = {"torch_dtype": dtype} if dtype is not None else {}
    model, info = WanTransformer3DModel.from_pretrained(path, output_loading_info=True, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.clone()
    return model.eval(), info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("orig_dir")
    ap.add_argument("--bf16", action="store_true", help="load both with torch_dtype=bfloat16")
    ap.add_argument("--max-rel", type=float, default=0.0, help="forward tolerance, relative to max |out| (0: exact)")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    dtype = torch.bfloat16 if a.bf16 else None
    bad = []

    print(f"files in {a.dir}: {sorted(os.listdir(a.dir))}")
    m, info = load(a.dir, dtype)
    o, _ = load(a.orig_dir, dtype)
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        v = info.get(k, [])
        print(f"{k}: {v}")
        if v:
            bad.append(k)

    c1 = {k: v for k, v in json.load(open(os.path.join(a.dir, "config.json"))).items() if k != "_diffusers_version"}
    c2 = {k: v for k, v in json.load(open(os.path.join(a.orig_dir, "config.json"))).items() if k != "_diffusers_version"}
    if c1 != c2:
        bad.append("config")
        print(f"config differs: {sorted(set(c1.items()) ^ set(c2.items()), key=str)}")
    else:
        print(f"config.json: same {len(c1)} fields")

    s1, s2 = m.state_dict(), o.state_dict()
    if list(s1) != list(s2):
        bad.append("names")
        print(f"parameter names differ: {sorted(set(s1) ^ set(s2))}")
    same = worst = 0
    for k in s2:
        if k not in s1:
            continue
        x, y = s1[k], s2[k]
        if x.shape != y.shape or x.dtype != y.dtype:
            bad.append("shape/dtype")
            print(f"{k}: {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}")
            continue
        if torch.equal(x, y):
            same += 1
        else:
            worst = max(worst, (x.float() - y.float()).abs().max().item())
    dtypes = sorted({str(v.dtype) for v in s1.values()})
    print(f"parameters: {len(s1)} ({', '.join(dtypes)}), {same} bit-identical to the original, "
          f"largest difference elsewhere {worst:.3g}")

    cfg = m.config
    pt, ph, pw = cfg.patch_size
    x = torch.randn(1, cfg.in_channels, 2 * pt, 4 * ph, 4 * pw)
    t = torch.tensor([500.0])
    ctx = torch.randn(1, 8, cfg.text_dim)
    wdt = torch.bfloat16 if a.bf16 else torch.float32
    with torch.no_grad():
        y1 = m(x.to(wdt), t, ctx.to(wdt)).sample.float()
        y2 = o(x.to(wdt), t, ctx.to(wdt)).sample.float()
    rel = ((y1 - y2).abs().max() / y2.abs().max()).item()
    print(f"forward {tuple(y1.shape)}: max |dir - orig| / max |orig| = {rel:.3g} (bound {a.max_rel:g})")
    if not rel <= a.max_rel:
        bad.append("forward")
    print("OK" if not bad else f"FAILED: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
