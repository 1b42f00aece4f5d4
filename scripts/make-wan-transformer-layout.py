#!/usr/bin/env python3
"""make-wan-transformer-layout.py: regenerate tests/fixtures/wan_transformer_layout/.

Records the released Wan 2.1 T2V 1.3B transformer's weight layout without its weights: diffusers'
WanTransformer3DModel is built with the real config (reference/wan.md 1.1, the
Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json) on the meta device (no memory, no
download), and every tensor of its state dict is written with its shape and dtypes:

  config.json           the diffusers config (every __init__ field, as save_pretrained writes it,
                        less _diffusers_version)
  original_config.json  the original Wan checkpoint's config.json (WanModel), as wan.md 1.1 lists it
  layout.json           {name: {"shape": [...], "dtype": "F32", "dtype_bf16_load": "F32"|"BF16"}}
                        for all 825 tensors; "dtype" is the stored dtype of the Diffusers repo (all
                        F32, wan.md 7), "dtype_bf16_load" what from_pretrained(torch_dtype=bfloat16)
                        makes of it (_keep_in_fp32_modules, wan.md 1.4)

The C test writes random weights in this layout and runs the production loader on it. The script
asserts the tensor count (825) and parameter count (1,418,996,800) of wan.md 1.5 / 0.

Usage: scripts/make-wan-transformer-layout.py [OUTDIR]
"""
import json
import os
import sys

import torch
from diffusers import WanTransformer3DModel

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

CONFIG_1_3B = dict(  # wan.md 1.1; diffusers scripts/convert_wan_to_diffusers.py get_transformer_config("Wan-T2V-1.3B")
    added_kv_proj_dim=None, attention_head_dim=128, cross_attn_norm=True, eps=1e-06, ffn_dim=8960, freq_dim=256,
    image_dim=None, in_channels=16, num_attention_heads=12, num_layers=30, out_channels=16, patch_size=[1, 2, 2],
    qk_norm="rms_norm_across_heads", rope_max_seq_len=1024, text_dim=4096,
)
ORIGINAL_1_3B = {  # wan.md 1.1: config.json of the original-format repo Wan-AI/Wan2.1-T2V-1.3B
    "_class_name": "WanModel", "dim": 1536, "eps": 1e-06, "ffn_dim": 8960, "freq_dim": 256, "in_dim": 16,
    "model_type": "t2v", "num_heads": 12, "num_layers": 30, "out_dim": 16, "text_len": 512,
}
N_TENSORS = 825
N_PARAMS = 1_418_996_800


def kept_fp32(name):
    # diffusers model_loading_utils.py: a dotted component of the name is in _keep_in_fp32_modules
    return any(m in name.split(".") for m in WanTransformer3DModel._keep_in_fp32_modules)


def dump(path, obj, indent):
    with open(path, "w") as f:
        json.dump(obj, f, indent=indent, sort_keys=True)
        f.write("\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "wan_transformer_layout")
    os.makedirs(out, exist_ok=True)
    with torch.device("meta"):
        model = WanTransformer3DModel(**CONFIG_1_3B)
    cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    cfg["patch_size"] = list(cfg["patch_size"])
    cfg["_class_name"] = "WanTransformer3DModel"
    sd = model.state_dict()
    if len(sd) != N_TENSORS:
        sys.exit(f"make-wan-transformer-layout.py: {len(sd)} tensors, expected {N_TENSORS} (wan.md 1.5)")
    nparams = sum(v.numel() for v in sd.values())
    if nparams != N_PARAMS:
        sys.exit(f"make-wan-transformer-layout.py: {nparams} parameters, expected {N_PARAMS} (wan.md 0)")
    layout = {k: {"shape": list(v.shape), "dtype": "F32", "dtype_bf16_load": "F32" if kept_fp32(k) else "BF16"}
              for k, v in sd.items()}
    dump(os.path.join(out, "config.json"), cfg, 2)
    dump(os.path.join(out, "original_config.json"), ORIGINAL_1_3B, 2)
    with open(os.path.join(out, "layout.json"), "w") as f:  # one tensor per line, sorted by name
        rows = [f" {json.dumps(k)}: {json.dumps(layout[k], sort_keys=True)}" for k in sorted(layout)]
        f.write("{\n" + ",\n".join(rows) + "\n}\n")
    n32 = sum(1 for v in layout.values() if v["dtype_bf16_load"] == "F32")
    print(f"make-wan-transformer-layout.py: {len(layout)} tensors, {nparams} parameters, {n32} kept F32 in a bf16 load;"
          f" wrote {out}")


if __name__ == "__main__":
    main()
