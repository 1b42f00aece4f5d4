#!/usr/bin/env python3
"""make-train-fixtures.py: regenerate tests/fixtures/wan_train/.

The reference for lib/train/trainer.h: a plain PyTorch flow-matching training loop (20 AdamW steps,
2 micro-batches of 2 samples each, gradient clipping, warmup + cosine learning rate) on the tiny
diffusers WanTransformer3DModel of tests/fixtures/wan_transformer/a/transformer, with every random
draw (sample indices, sigma, noise) recorded, so the C test can feed the trainer the same numbers
and compare the losses, gradient norms, learning rates and final weights. Two variants: full/ (every
parameter trained) and lora/ (a PEFT LoRA on the frozen base). The same loop also runs in float64
(model.double(), the data cast) as the yardstick of f32's own error.
tests/fixtures/wan_train/README.md documents every file.

The loop (ref: NeMo Automodel flow_matching/pipeline.py FlowMatchingPipeline.step, reference/nemo.md
3.1; "linear" loss weighting with flow_shift 3):
  per micro-batch (B samples): x_t = (1 - s) x0 + s eps; t = 1000 s (f32); pred = model(x_t, t, T).sample;
    v = eps - x0; w = 1 + 3 s; loss = mean(w (pred - v)^2); (loss / grad_accum).backward()
  per step: clip_grad_norm_ (the pre-clip total norm is recorded), AdamW step, LambdaLR step, zero_grad.
  lr(n) = lr (n + 1) / warmup for n < warmup, else min_lr + (lr - min_lr) 0.5 (1 + cos(pi (n - warmup) /
  (total - warmup))): dfm_lr_at("cosine", n, warmup, total, lr, min_lr) of lib/train/optim.h.

Reads tests/fixtures/wan_transformer/a/transformer (written by make-wan-transformer-fixtures.py, so
scripts/make-fixtures.sh runs this generator after that one); case.json records its sha256.

Checks made here before anything is written (the script stops if one fails): the f32 and f64 runs
agree (losses to 1e-3 relative); with the chosen max_norm some steps clip and some do not, in both
variants, and no grad norm is within 2% of it; every trained tensor moved; the losses are finite; the lr schedule matches the formula above.

Python is only needed to regenerate the fixtures, never by `make test`. Needs torch, diffusers,
peft, safetensors and numpy (PyPI). Deterministic: one thread, deterministic algorithms, fixed seeds.

Usage: scripts/make-train-fixtures.py [--out DIR]
"""

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys

try:
    import numpy as np
    import torch
    import diffusers
    import peft
    import safetensors
    from safetensors.torch import save_file
    from diffusers import WanTransformer3DModel
    from peft import LoraConfig
except ImportError as e:  # pragma: no cover
    sys.exit(f"make-train-fixtures.py: {e}; install with: pip install torch diffusers peft safetensors numpy")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
MODEL = os.path.join(ROOT, "tests", "fixtures", "wan_transformer", "a", "transformer")

SEED = 7301
S, C, F, H, W = 4, 16, 1, 4, 4          # samples and their latent shape
TEXT_LEN, TEXT_DIM = 12, 32
TEXT_ROWS = [5, 12, 3, 7]               # valid rows per sample, zeros after
STEPS, ACCUM, B = 20, 2, 2
SIGMA_LO, SIGMA_HI = 0.02, 0.98
NUM_TRAIN_TIMESTEPS = 1000
FLOW_SHIFT = 3.0                        # linear weighting: w = 1 + FLOW_SHIFT sigma
LR, MIN_LR, WARMUP = 1e-3, 1e-4, 3
BETAS, EPS, WEIGHT_DECAY = (0.9, 0.999), 1e-8, 0.01
LORA_R, LORA_ALPHA = 4, 8
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]  # dfm_wan_lora_default_targets
MAX_NORM = {"full": 2.5, "lora": 0.45}
LOSS_TOL = 1e-3                         # f32 vs f64 losses, relative (a sanity bound; measured ~1e-6)


def fail(msg):
    sys.exit(f"make-train-fixtures.py: {msg}")


def save_npy(path, a):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    np.save(path, np.ascontiguousarray(a))


def relerr(a, b):
    """max |a - b| / max |b| (b the reference)."""
    a, b = a.double(), b.double()
    den = float(b.abs().max())
    return float((a - b).abs().max()) / (den if den > 0 else 1.0)


def lr_factor(n):
    """dfm_lr_at("cosine", n, WARMUP, STEPS, LR, MIN_LR) / LR."""
    if n < WARMUP:
        return (n + 1) / WARMUP
    r = (n - WARMUP) / (STEPS - WARMUP)
    m = MIN_LR / LR
    return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * r))


def load(dtype):
    """from_pretrained, then every parameter copied to fresh (allocator-aligned) memory (see
    make-wan-transformer-fixtures.py load(): mmapped tensors take another GEMM path)."""
    m = WanTransformer3DModel.from_pretrained(MODEL, torch_dtype=torch.float32)
    with torch.no_grad():
        for p in m.parameters():
            p.data = p.data.clone()
    return m.to(dtype).train()


def make_data():
    g = torch.Generator().manual_seed(SEED)
    x0 = torch.randn(S, C, F, H, W, generator=g)
    text = torch.zeros(S, TEXT_LEN, TEXT_DIM)
    for i, n in enumerate(TEXT_ROWS):
        text[i, :n] = torch.randn(n, TEXT_DIM, generator=g)
    idx = torch.randint(0, S, (STEPS, ACCUM, B), generator=g, dtype=torch.int64).to(torch.int32)
    sigma = SIGMA_LO + (SIGMA_HI - SIGMA_LO) * torch.rand(STEPS, ACCUM, B, generator=g)
    noise = torch.randn(STEPS, ACCUM, B, C, F, H, W, generator=g)
    if not ((sigma > SIGMA_LO) & (sigma < SIGMA_HI)).all():
        fail("sigma outside (0.02, 0.98)")
    return x0, text, idx, sigma, noise


def lora_model(dtype):
    """The base with PEFT's adapter; A from PEFT's kaiming-uniform init (global torch seed), B zero."""
    m = load(torch.float32)
    torch.manual_seed(SEED + 1)
    m.add_adapter(LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, init_lora_weights=True, lora_dropout=0.0,
                             target_modules=LORA_TARGETS))
    for n, p in m.named_parameters():
        p.requires_grad_("lora_" in n)
    return m.to(dtype)


def trained(m):
    """{diffusers name: parameter} of the trainable parameters (PEFT's ".default" stripped)."""
    return {n.replace(".default", ""): p for n, p in m.named_parameters() if p.requires_grad}


def train(m, data, dtype, max_norm):
    """The loop of the module docstring. Returns per-micro-batch losses [STEPS, ACCUM], pre-clip
    grad norms [STEPS], lrs [STEPS] (float64) and the final trainable parameters."""
    x0, text, idx, sigma, noise = (t.to(dtype) if t.is_floating_point() else t for t in data)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    losses = torch.zeros(STEPS, ACCUM, dtype=torch.float64)
    norms = torch.zeros(STEPS, dtype=torch.float64)
    lrs = torch.zeros(STEPS, dtype=torch.float64)
    for n in range(STEPS):
        lrs[n] = opt.param_groups[0]["lr"]
        for a in range(ACCUM):
            i = idx[n, a].long()
            x, s, eps = x0[i], sigma[n, a], noise[n, a]
            sv = s.view(B, 1, 1, 1, 1)
            xt = (1 - sv) * x + sv * eps
            t = s * NUM_TRAIN_TIMESTEPS
            pred = m(hidden_states=xt, timestep=t, encoder_hidden_states=text[i], return_dict=False)[0]
            v = eps - x
            w = 1 + FLOW_SHIFT * s
            loss = (w.view(B, 1, 1, 1, 1) * (pred.to(dtype) - v) ** 2).mean()
            (loss / ACCUM).backward()
            losses[n, a] = float(loss.detach())
        norms[n] = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    final = {k: p.detach().clone() for k, p in trained(m).items()}
    return losses, norms, lrs, final


def f32_file(d):
    return {k: v.float().contiguous() for k, v in sorted(d.items())}


def variant(out, name, data, report, info):
    d = os.path.join(out, name)
    os.makedirs(d)
    res = {}
    for dtype in (torch.float32, torch.float64):
        m = lora_model(dtype) if name == "lora" else load(dtype)
        if name == "full":
            for p in m.parameters():
                p.requires_grad_(True)
        init = {k: p.detach().clone() for k, p in trained(m).items()}
        res[dtype] = (init,) + train(m, data, dtype, MAX_NORM[name])
    init, losses, norms, lrs, final = res[torch.float32]
    init64, losses64, norms64, lrs64, final64 = res[torch.float64]

    if not torch.isfinite(losses).all() or not torch.isfinite(losses64).all():
        fail(f"{name}: non-finite loss")
    want_lr = torch.tensor([LR * lr_factor(n) for n in range(STEPS)], dtype=torch.float64)
    if relerr(lrs, want_lr) > 1e-12 or not torch.equal(lrs, lrs64):
        fail(f"{name}: the scheduler's lr differs from the formula")
    e_loss = relerr(losses, losses64)
    if e_loss > LOSS_TOL:
        fail(f"{name}: f32 vs f64 losses {e_loss:.2e} > {LOSS_TOL:g}")
    clipped = [n for n in range(STEPS) if norms[n] > MAX_NORM[name]]
    if not clipped or len(clipped) == STEPS:
        fail(f"{name}: max_norm {MAX_NORM[name]} clips {len(clipped)} of {STEPS} steps (grad norms "
             f"{[round(float(x), 3) for x in norms]}); pick one that clips some")
    near = [n for n in range(STEPS) if abs(float(norms[n]) / MAX_NORM[name] - 1) < 0.02]
    if near:
        fail(f"{name}: grad norms of steps {near} within 2% of max_norm {MAX_NORM[name]}: pick another")
    if [n for n in range(STEPS) if norms64[n] > MAX_NORM[name]] != clipped:
        fail(f"{name}: f32 and f64 runs clip different steps")
    if name == "lora":
        nb = sum(1 for k in init if "lora_B" in k)
        if nb != 20 or any(float(v.abs().max()) != 0 for k, v in init.items() if "lora_B" in k):
            fail("lora: expected 20 adapters with B zero at init")
        if not all(torch.equal(init[k].double(), init64[k]) for k in init):
            fail("lora: the f32 and f64 runs start from different A")
    still = [k for k in final if torch.equal(final[k], init[k])]
    if still:
        fail(f"{name}: parameters never updated: {still[:4]}")

    # torch's own f32 error after 20 steps: per tensor max |p32 - p64| / max |p64 - p0| (the change)
    # and / max |p64|
    worst_d, worst_d_name, worst_p = 0.0, "", 0.0
    for k in final:
        den = float((final64[k] - init64[k]).abs().max())
        e = float((final[k].double() - final64[k]).abs().max())
        if e / den > worst_d:
            worst_d, worst_d_name = e / den, k
        worst_p = max(worst_p, relerr(final[k], final64[k]))

    save_npy(os.path.join(d, "losses.npy"), losses.float())
    save_npy(os.path.join(d, "losses_f64.npy"), losses64.float())
    save_npy(os.path.join(d, "grad_norm.npy"), norms.float())
    save_npy(os.path.join(d, "grad_norm_f64.npy"), norms64.float())
    save_npy(os.path.join(d, "lr.npy"), lrs.float())
    save_file(f32_file(final), os.path.join(d, "final.safetensors"))
    save_file(f32_file(final64), os.path.join(d, "final_f64.safetensors"))
    if name == "lora":
        save_file(f32_file(init), os.path.join(d, "init.safetensors"))

    ntrain = sum(v.numel() for v in final.values())
    info[name] = {
        "max_grad_norm": MAX_NORM[name], "trainable_tensors": len(final), "trainable_params": ntrain,
        "clipped_steps": clipped,
        "loss_first": float(losses[0].mean()), "loss_last": float(losses[-1].mean()),
        "f32_vs_f64_loss_max_rel": e_loss,
        "f32_vs_f64_grad_norm_max_rel": float(((norms - norms64).abs() / norms64).max()),
        "f32_vs_f64_param_worst_rel_to_change": worst_d, "worst_param": worst_d_name,
        "f32_vs_f64_param_worst_rel_to_max": worst_p,
    }
    report.append(f"{name}: {len(final)} tensors, {ntrain} params; loss {info[name]['loss_first']:.4f} -> "
                  f"{info[name]['loss_last']:.4f}; grad norms {float(norms.min()):.3f}..{float(norms.max()):.3f}, "
                  f"max_norm {MAX_NORM[name]} clips steps {clipped}; f32 vs f64: losses {e_loss:.1e}, grad norms "
                  f"{info[name]['f32_vs_f64_grad_norm_max_rel']:.1e}, params {worst_p:.1e} of max, "
                  f"{worst_d:.1e} of the change ({worst_d_name})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "wan_train"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    if not os.path.isdir(MODEL):
        fail(f"{MODEL} is missing: run scripts/make-wan-transformer-fixtures.py first")
    data = make_data()
    for name in ("full", "lora"):
        shutil.rmtree(os.path.join(a.out, name), ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    x0, text, idx, sigma, noise = data
    save_npy(os.path.join(a.out, "x0.npy"), x0)
    save_npy(os.path.join(a.out, "text.npy"), text)
    save_npy(os.path.join(a.out, "text_rows.npy"), torch.tensor(TEXT_ROWS, dtype=torch.int32))
    save_npy(os.path.join(a.out, "indices.npy"), idx)
    save_npy(os.path.join(a.out, "sigma.npy"), sigma)
    save_npy(os.path.join(a.out, "noise.npy"), noise)

    with open(os.path.join(MODEL, "diffusion_pytorch_model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    info = {
        "model": "../wan_transformer/a/transformer", "model_sha256": sha,
        "samples": S, "latent": [C, F, H, W], "text_len": TEXT_LEN, "text_dim": TEXT_DIM, "text_rows": TEXT_ROWS,
        "steps": STEPS, "grad_accum": ACCUM, "micro_batch": B, "sigma_range": [SIGMA_LO, SIGMA_HI],
        "num_train_timesteps": NUM_TRAIN_TIMESTEPS, "loss_weighting": "linear", "flow_shift": FLOW_SHIFT,
        "lr": LR, "min_lr": MIN_LR, "schedule": "cosine", "warmup_steps": WARMUP, "total_steps": STEPS,
        "adamw": {"betas": list(BETAS), "eps": EPS, "weight_decay": WEIGHT_DECAY},
        "lora_config": {"r": LORA_R, "alpha": LORA_ALPHA, "dropout": 0.0, "target_modules": LORA_TARGETS},
    }
    report = []
    for name in ("full", "lora"):
        variant(a.out, name, data, report, info)
    info["versions"] = {"torch": torch.__version__, "diffusers": diffusers.__version__, "peft": peft.__version__,
                        "safetensors": safetensors.__version__, "numpy": np.__version__,
                        "python": sys.version.split()[0]}
    with open(os.path.join(a.out, "case.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    for line in report:
        print(line)
    print(f"make-train-fixtures.py: wrote {a.out} (torch {torch.__version__}, diffusers {diffusers.__version__}, "
          f"peft {peft.__version__}, safetensors {safetensors.__version__}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
