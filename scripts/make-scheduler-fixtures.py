#!/usr/bin/env python3
"""make-scheduler-fixtures.py — regenerate tests/fixtures/schedulers/schedulers.safetensors, diffusers'
numbers for tests/unit/test_scheduler.c (lib/sample/scheduler.c). See tests/fixtures/schedulers/README.md.

Schedulers as the Wan pipeline builds them (diffusers, on the CPU):
  unipc.s{3,5}.n{1,2,3,10,50}  UniPCMultistepScheduler(prediction_type="flow_prediction",
                               use_flow_sigmas=True, flow_shift=s) — Wan's shipped config otherwise
  euler.s{3,1}.n{1,10,50}      FlowMatchEulerDiscreteScheduler(shift=s)
each set_timesteps(n) and set_begin_index(0), as WanPipeline.__call__ does. Per config C:
  C.sigmas [n+1] f32, C.timesteps [n] (I64 for UniPC, F32 for Euler)
  a trajectory: x = x_init ([2, 16, 3, 4, 6] f32), for each step i with t = timesteps[i]:
      model_out = a / (1 + |a|), a = 0.75 * x + t / 8192   (f32; only correctly rounded ops, so the
      C test computes the same bits), x = scheduler.step(model_out, t, x).prev_sample
  C.cr.final, C.cr.samples [n, 32] (x after each step at the 32 positions `idx`): UniPC with torch.log
      and torch.expm1 of its 0-d f32 scalars replaced by correctly rounded ones (float64 libm, then
      rounded to f32; what lib/sample/scheduler.c computes); everything else is diffusers' own code
      and torch's own ops, including torch.linalg.solve
  C.torch.samples [n, 32] (all UniPC configs) and C.torch.final (s3 n10, s3 n50, s5 n50): unpatched
  C.final, C.samples (Euler: no log or expm1 in it)
  bf16 variants (the model output in bf16, as a bf16 transformer gives it): unipc.s3.n10.bf16.cr.final
  and euler.s3.n10.bf16.final with their .samples
  unipc.{bh1,order1,sigma_min,disable}.cr.samples and .sigmas: shift 3, 10 steps, with solver_type
  "bh1"; solver_order 1; final_sigmas_type "sigma_min" with lower_order_final False; disable_corrector
  [0, 3, 4]
metadata: "configs" (comma-separated names), "log_mismatch" (how many of the UniPC scalars torch's
CPU log/expm1 round differently from the correctly rounded value, per config).

The script asserts that its numpy replica of lib/sample/scheduler.c's 2x2 solve matches
torch.linalg.solve on 50k random systems. Needs torch, diffusers (0.42.1 used), safetensors.
Run only to change the fixture (the output is committed).
"""
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "schedulers",
                   "schedulers.safetensors")
SHAPE = (2, 16, 3, 4, 6)
NIDX = 32

torch.set_num_threads(1)
_log, _expm1 = torch.log, torch.expm1
stats = {"n": 0, "diff": 0}


def _cr(f64fn, orig):
    def fn(t, *a, **k):
        if isinstance(t, torch.Tensor) and t.dim() == 0 and t.dtype == torch.float32 and not a and not k:
            v = t.item()
            if f64fn is math.log and v == 0:
                r = -math.inf
            elif f64fn is math.log and v < 0:
                r = math.nan
            else:
                r = f64fn(v)
            out = torch.tensor(np.float32(r), dtype=torch.float32, device=t.device)
            stats["n"] += 1
            stats["diff"] += int(orig(t).item() != out.item() and not math.isnan(out.item()))
            return out
        return orig(t, *a, **k)
    return fn


def unipc(shift, **kw):
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                   num_train_timesteps=1000, flow_shift=shift, **kw)


# non-default UniPC options (shift 3, 10 steps; samples only, to keep the file small)
OPTIONS = {
    "bh1": dict(solver_type="bh1"),
    "order1": dict(solver_order=1),
    "sigma_min": dict(final_sigmas_type="sigma_min", lower_order_final=False),
    "disable": dict(disable_corrector=[0, 3, 4]),
}


def euler(shift):
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def model(x, t):
    tf = torch.tensor(float(t), dtype=torch.float32) if not isinstance(t, torch.Tensor) else t.to(torch.float32)
    a = x * 0.75 + tf / 8192
    return a / (a.abs() + 1)


def run(make, n, x0, idx, bf16=False, cr=False):
    s = make()
    s.set_timesteps(n, device="cpu")
    s.set_begin_index(0)
    x = x0.clone()
    samples = []
    if cr:
        torch.log, torch.expm1 = _cr(math.log, _log), _cr(math.expm1, _expm1)
    try:
        for t in s.timesteps:
            v = model(x.float(), t)
            if bf16:
                v = v.to(torch.bfloat16)
            x = s.step(v, t, x, return_dict=False)[0]
            samples.append(x.float().reshape(-1)[idx].clone())
    finally:
        torch.log, torch.expm1 = _log, _expm1
    return s, x.float(), torch.stack(samples)


def solve_replica(r, b1, b2):
    f = np.float32
    one = f(1)
    if not abs(r) > 1:
        l = f(r * one)
        u22 = f(one - l)
        y2 = f(b2 - f(l * b1))
        x2 = f(y2 * f(one / u22))
        x1 = f(f(b1 - x2) * one)
    else:
        l = f(one * f(one / r))
        u22 = f(one - l)
        y2 = f(b1 - f(l * b2))
        x2 = f(y2 * f(one / u22))
        x1 = f(f(b2 - x2) * f(one / r))
    return x1, x2


def check_solve():
    rng = np.random.default_rng(7)
    n = 50000
    r = (-np.exp(rng.normal(size=n) * 1.5)).astype(np.float32)
    b = rng.normal(size=(n, 2)).astype(np.float32) * np.float32(0.3)
    R = torch.ones(n, 2, 2, dtype=torch.float32)
    R[:, 1, 0] = torch.from_numpy(r)
    got = torch.stack([torch.linalg.solve(R[k], torch.from_numpy(b[k])) for k in range(0, n)]).numpy()
    bad = 0
    for k in range(n):
        x1, x2 = solve_replica(r[k], b[k, 0], b[k, 1])
        bad += (x1 != got[k, 0]) or (x2 != got[k, 1])
    if bad:
        sys.exit(f"make-scheduler-fixtures: the 2x2 solve replica differs from torch.linalg.solve on {bad}/{n} systems")
    print(f"2x2 solve replica == torch.linalg.solve on {n} systems", file=sys.stderr)


def main():
    check_solve()
    g = torch.Generator().manual_seed(1234)
    x0 = torch.randn(SHAPE, generator=g, dtype=torch.float32)
    numel = x0.numel()
    idx = torch.from_numpy(np.linspace(0, numel - 1, NIDX).round().astype(np.int64))
    T = {"x_init": x0, "idx": idx}
    names, mism = [], []
    for shift in (3.0, 5.0):
        for n in (1, 2, 3, 10, 50):
            c = f"unipc.s{shift:g}.n{n}"
            names.append(c)
            stats["n"] = stats["diff"] = 0
            s, fin, smp = run(lambda: unipc(shift), n, x0, idx, cr=True)
            mism.append(f"{c}:{stats['diff']}/{stats['n']}")
            T[c + ".sigmas"] = s.sigmas.to(torch.float32)
            T[c + ".timesteps"] = s.timesteps.to(torch.int64)
            T[c + ".cr.final"], T[c + ".cr.samples"] = fin, smp
            _, fin2, smp2 = run(lambda: unipc(shift), n, x0, idx)
            T[c + ".torch.samples"] = smp2
            if (shift, n) in ((3.0, 10), (3.0, 50), (5.0, 50)):
                T[c + ".torch.final"] = fin2
            d = (fin2 - fin).abs().max().item()
            print(f"{c}: cr vs torch max |diff| {d:.3g}, log/expm1 mismatches {stats['diff']}/{stats['n']}",
                  file=sys.stderr)
    for shift in (3.0, 1.0):
        for n in (1, 10, 50):
            c = f"euler.s{shift:g}.n{n}"
            names.append(c)
            s, fin, smp = run(lambda: euler(shift), n, x0, idx)
            T[c + ".sigmas"] = s.sigmas.to(torch.float32)
            T[c + ".timesteps"] = s.timesteps.to(torch.float32)
            T[c + ".final"], T[c + ".samples"] = fin, smp
    for name, kw in OPTIONS.items():
        s, _, smp = run(lambda: unipc(3.0, **kw), 10, x0, idx, cr=True)
        T[f"unipc.{name}.sigmas"] = s.sigmas.to(torch.float32)
        T[f"unipc.{name}.cr.samples"] = smp
    _, fin, smp = run(lambda: unipc(3.0), 10, x0, idx, bf16=True, cr=True)
    T["unipc.s3.n10.bf16.cr.final"], T["unipc.s3.n10.bf16.cr.samples"] = fin, smp
    _, fin, smp = run(lambda: euler(3.0), 10, x0, idx, bf16=True)
    T["euler.s3.n10.bf16.final"], T["euler.s3.n10.bf16.samples"] = fin, smp
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    meta = {"configs": ",".join(names), "log_mismatch": ",".join(mism),
            "versions": f"torch {torch.__version__}, diffusers {__import__('diffusers').__version__}, "
                        f"numpy {np.__version__}"}
    save_file({k: v.contiguous() for k, v in T.items()}, OUT, metadata=meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
