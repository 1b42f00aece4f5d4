#!/usr/bin/env python3
"""make-safetensors-fixture.py — regenerate tests/fixtures/safetensors/small.safetensors, the
interop fixture for tests/unit/test_safetensors.c: a few tiny tensors in F32, BF16, F16, I64
and U8 (a rank-0 scalar and an empty tensor too) saved by the Python `safetensors` library with
__metadata__ {"format": "pt"}. The C test reads the exact values back and checks that dfm_st_write
produces the same bytes for the same tensors. Needs torch + safetensors; run only to change the
fixture (the output is committed). Prints the values so the C test's tables can be checked.
"""
import os
import sys

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "safetensors", "small.safetensors")

tensors = {
    # exact in f32: arange(6) * 0.5 - 1
    "encoder.conv_in.weight": (torch.arange(6, dtype=torch.float32) * 0.5 - 1).reshape(2, 3),
    # rounded by torch to bf16 (1/3 and 1e-3 are inexact; 3.140625 and -2.5 are exact)
    "encoder.norm.gamma": torch.tensor([1.0, -2.5, 3.140625, 1e-3, 1 / 3], dtype=torch.float32).to(torch.bfloat16),
    # f16: a normal, the most negative finite, a subnormal, infinity
    "decoder.half": torch.tensor([[0.1, -65504.0], [6e-8, float("inf")]], dtype=torch.float32).to(torch.float16),
    "ids": torch.tensor([1, -2, 1 << 40], dtype=torch.int64),
    "bytes": torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8),
    "scalar": torch.tensor(7.25, dtype=torch.float32),
    "empty": torch.zeros((0, 3), dtype=torch.float32),
}

os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file(tensors, OUT, metadata={"format": "pt"})
size = os.path.getsize(OUT)
assert size < 4096, size
print(f"wrote {os.path.relpath(OUT)} ({size} bytes)", file=sys.stderr)
for name, t in tensors.items():
    bits = t.view(torch.int16).tolist() if t.dtype in (torch.bfloat16, torch.float16) else None
    print(f"{name}: {t.dtype} {list(t.shape)} {t.float().flatten().tolist()}"
          + (f" bits {[hex(b & 0xffff) for b in torch.tensor(bits).flatten().tolist()]}" if bits else ""))
