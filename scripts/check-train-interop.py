#!/usr/bin/env python3
"""check-train-interop.py DIR: what dfm-train saves loads in diffusers and gives dfm's output.

DIR is what `DFM_INTEROP_OUT=DIR dfm-unit-tests train_interop` writes (tests/unit/
test_train_interop.c): DIR/lora (a trained LoRA as dfm-train saves it: adapter_model.safetensors
in diffusion-pipe/ComfyUI naming + adapter_config.json) with DIR/lora_out.npy, and DIR/full (a
fully fine-tuned transformer as a diffusers directory) with DIR/full_out.npy — dfm's forward of
the trained model on tests/fixtures/wan_transformer/a's inputs. Here diffusers loads each the way
a user would (WanPipeline.lora_state_dict + load_lora_into_transformer onto the base model, as
WanPipeline.load_lora_weights does; WanTransformer3DModel.from_pretrained) and runs the same
forward; both must agree with dfm within TOL of max |out|. Exit 0 when they do.
Needs torch, diffusers, peft, safetensors, numpy (tests/pipeline/interop_train.sh skips without).
"""
import os
import sys

import numpy as np
import torch
from diffusers import WanPipeline, WanTransformer3DModel

TOL = 2e-5
d = sys.argv[1]
top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
fx = os.path.join(top, "tests", "fixtures", "wan_transformer", "a")
torch.set_num_threads(1)
x = torch.from_numpy(np.load(os.path.join(fx, "hidden_states.npy")))
ctx = torch.from_numpy(np.load(os.path.join(fx, "encoder_hidden_states.npy")))
t = torch.from_numpy(np.load(os.path.join(fx, "timestep.npy")))


def fwd(m):
    with torch.no_grad():
        return m(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


ok = True
base = WanTransformer3DModel.from_pretrained(os.path.join(fx, "transformer"), torch_dtype=torch.float32)
sd, md = WanPipeline.lora_state_dict(os.path.join(d, "lora", "adapter_model.safetensors"), return_lora_metadata=True)
WanPipeline.load_lora_into_transformer(sd, transformer=base, metadata=md)
ref = torch.from_numpy(np.load(os.path.join(d, "lora_out.npy")))
e = rel(fwd(base), ref)
print(f"LoRA: diffusers load_lora_into_transformer of dfm's adapter: {len(sd)} tensors, max rel diff to dfm {e:.2e}")
ok &= e <= TOL

full = WanTransformer3DModel.from_pretrained(os.path.join(d, "full"), torch_dtype=torch.float32)
ref = torch.from_numpy(np.load(os.path.join(d, "full_out.npy")))
e = rel(fwd(full), ref)
print(f"full: WanTransformer3DModel.from_pretrained of dfm's checkpoint: max rel diff to dfm {e:.2e}")
ok &= e <= TOL
sys.exit(0 if ok else 1)
