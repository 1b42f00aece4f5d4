#!/usr/bin/env python3
"""make-optim-fixtures.py — regenerate tests/fixtures/optim/adamw.safetensors, torch's numbers for
tests/unit/test_optim.c (lib/train/optim.c):

  AdamW: for each config c (0: defaults, wd 0.01; 1: betas (0.8, 0.99), eps 1e-6, wd 0;
  2: beta1 0.3 — lerp weight 0.7, the lerp's other branch — wd 0.1), three small parameters
  (shapes [3, 5], [7], [2, 2, 3]) stepped 10 times by torch.optim.AdamW (CPU, foreach=False) with
  given gradients and a learning rate that changes every step:
    c{c}.p{j}.init, c{c}.g{j}.s{k} (k = 0..9)       the inputs
    c{c}.p{j}.torch, .m{j}.torch, .v{j}.torch        torch.optim.AdamW after 10 steps
    c{c}.p{j}.replica                                the same 10 steps spelled with torch's own
                                                     tensor ops in _single_tensor_adam's order, but
                                                     with a correctly rounded sqrt (via float64):
                                                     torch's CPU sqrt is off by 1 ulp on ~1/6 of
                                                     the elements; m and v do not involve it
  metadata "c{c}.lr" = the 10 learning rates (repr, comma-separated), "c{c}.opts" = beta1, beta2,
  eps, weight_decay.
  The script asserts that the replica with torch's sqrt is bit-identical to torch.optim.AdamW, so
  the replica is torch's arithmetic up to the sqrt.

  Gradient norm: gn.g{j} (shapes [1000], [4099], [3, 4]) and
  metadata "gn.norm" = torch.nn.utils.clip_grad_norm_(max_norm=0.5) (f32, repr), and gn.g{j}.clipped,
  the gradients it scaled.

Needs torch + safetensors; run only to change the fixture (the output is committed).
"""
import os
import sys

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "optim",
                   "adamw.safetensors")
SHAPES = [(3, 5), (7,), (2, 2, 3)]
CONFIGS = [
    dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
    dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0),
    dict(betas=(0.3, 0.999), eps=1e-8, weight_decay=0.1),
]
STEPS = 10

torch.manual_seed(20240611)
tensors, meta = {}, {"format": "dfm-test"}


def replica_step(p, g, m, v, step, lr, beta1, beta2, eps, wd, exact_sqrt):
    """ref: torch/optim/adam.py _single_tensor_adam, decoupled_weight_decay=True"""
    if wd != 0:
        p.mul_(1 - lr * wd)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bc1 = 1 - beta1 ** step
    bc2 = 1 - beta2 ** step
    step_size = lr / bc1
    bc2_sqrt = bc2 ** 0.5
    s = v.double().sqrt().float() if exact_sqrt else v.sqrt()
    denom = (s / bc2_sqrt).add_(eps)
    p.addcdiv_(m, denom, value=-step_size)


for c, cfg in enumerate(CONFIGS):
    lrs = [1e-3 * (0.5 + 0.1 * k) for k in range(STEPS)]
    params = [torch.randn(s) for s in SHAPES]
    grads = [[torch.randn(s) * (0.1 if k % 2 else 1.0) for s in SHAPES] for k in range(STEPS)]
    ps = [p.clone().requires_grad_() for p in params]
    opt = torch.optim.AdamW(ps, lr=lrs[0], foreach=False, **cfg)
    reps = {True: [p.clone() for p in params], False: [p.clone() for p in params]}
    rstate = {e: ([torch.zeros(s) for s in SHAPES], [torch.zeros(s) for s in SHAPES]) for e in (True, False)}
    for k in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lrs[k]
        for p, g in zip(ps, grads[k]):
            p.grad = g.clone()
        opt.step()
        for exact in (True, False):
            for j in range(len(SHAPES)):
                replica_step(reps[exact][j], grads[k][j], rstate[exact][0][j], rstate[exact][1][j], float(k + 1),
                             lrs[k], cfg["betas"][0], cfg["betas"][1], cfg["eps"], cfg["weight_decay"], exact)
    for j in range(len(SHAPES)):
        st = opt.state[ps[j]]
        assert torch.equal(reps[False][j], ps[j].detach()), f"replica (torch sqrt) != AdamW, config {c} param {j}"
        assert torch.equal(rstate[True][0][j], st["exp_avg"]) and torch.equal(rstate[True][1][j], st["exp_avg_sq"])
        tensors[f"c{c}.p{j}.init"] = params[j]
        for k in range(STEPS):
            tensors[f"c{c}.g{j}.s{k}"] = grads[k][j]
        tensors[f"c{c}.p{j}.torch"] = ps[j].detach().clone()
        tensors[f"c{c}.m{j}.torch"] = st["exp_avg"].clone()
        tensors[f"c{c}.v{j}.torch"] = st["exp_avg_sq"].clone()
        tensors[f"c{c}.p{j}.replica"] = reps[True][j]
        nd = int((reps[True][j] != ps[j].detach()).sum())
        print(f"config {c} param {j}: replica (exact sqrt) differs from torch in {nd} of {params[j].numel()}",
              file=sys.stderr)
    meta[f"c{c}.lr"] = ",".join(repr(x) for x in lrs)
    meta[f"c{c}.opts"] = ",".join(repr(x) for x in (cfg["betas"][0], cfg["betas"][1], cfg["eps"], cfg["weight_decay"]))

gshapes = [(1000,), (4099,), (3, 4)]
gs = [torch.randn(s) * 0.01 for s in gshapes]
gps = [torch.zeros(s, requires_grad=True) for s in gshapes]
for p, g in zip(gps, gs):
    p.grad = g.clone()
norm = torch.nn.utils.clip_grad_norm_(gps, max_norm=0.5, foreach=False)
for j in range(len(gshapes)):
    tensors[f"gn.g{j}"] = gs[j]
    tensors[f"gn.g{j}.clipped"] = gps[j].grad.clone()
meta["gn.norm"] = repr(float(norm))
print(f"grad norm {float(norm)!r}", file=sys.stderr)

os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file({k: v.contiguous() for k, v in tensors.items()}, OUT, metadata=meta)
print(f"wrote {os.path.relpath(OUT)} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)
