#!/usr/bin/env python3
"""Record the real Wan 2.1 VAE weight layout (every tensor name and shape of diffusers'
AutoencoderKLWan with the released config, 194 tensors) and that config, without weights:
tests/fixtures/wan_vae_layout/{config.json,layout.json}. The C test writes random weights in this
layout and runs the production loader and a small encode/decode on it."""
import json
import os
import sys

import torch
from diffusers import AutoencoderKLWan

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/wan_vae_layout"
os.makedirs(out, exist_ok=True)
with torch.device("meta"):
    vae = AutoencoderKLWan()  # the released Wan 2.1 config is the class default
cfg = dict(vae.config)
cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
cfg["_class_name"] = "AutoencoderKLWan"
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2, sort_keys=True)
    f.write("\n")
layout = {k: list(v.shape) for k, v in vae.state_dict().items()}
with open(os.path.join(out, "layout.json"), "w") as f:
    json.dump(layout, f, indent=1, sort_keys=True)
    f.write("\n")
print(f"{len(layout)} tensors, {sum(torch.Size(s).numel() for s in layout.values())} parameters")
