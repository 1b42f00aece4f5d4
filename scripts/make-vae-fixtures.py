#!/usr/bin/env python3
"""make-vae-fixtures.py: regenerate tests/fixtures/wan_vae/.

Builds tiny, randomly initialised diffusers `AutoencoderKLWan` models (the real class with the
real block structure, only narrower), saves them with `save_pretrained` (config.json plus
diffusion_pytorch_model.safetensors, fp32), and records the reference data that the C parity
test compares against: input video, posterior mean/logvar, normalised latents, a seeded sample
and the decoded video, plus per-layer activations for one case.

Before it writes a case, the script checks the diffusers results for that case against an
independent, non-chunked functional re-implementation (ref_encode/ref_decode below). That
re-implementation follows the Wan spec (wan.md section 2.3, "equivalent full-sequence rules").
The script stops with an error if the two differ by more than 1e-4 anywhere.

Python is only needed to regenerate the fixtures, never by `make test`. Needs torch, diffusers
and numpy (from PyPI). The output is deterministic: same versions give byte-identical files
(single thread, deterministic algorithms, fixed seeds). See tests/fixtures/wan_vae/README.md.

Usage: scripts/make-vae-fixtures.py [--out DIR] [--no-check]
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import diffusers
    from diffusers import AutoencoderKLWan
except ImportError as e:  # pragma: no cover
    sys.exit(f"make-vae-fixtures.py: {e}; install with: pip install torch diffusers numpy safetensors")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# diffusers' defaults (= Wan2.1 WanVAE), 16 channels.
WAN_LATENTS_MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
WAN_LATENTS_STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                   3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]

# The structure is the real Wan 2.1 one (dim_mult [1,2,4,4], 2 res blocks, temporal downsample
# [False,True,True], no attention outside the mid blocks); only base_dim and z_dim shrink.
# Every channel count must stay even (the upsamplers halve it); RMS norm and the single-head
# attention have no other constraint. base_dim 4 rather than 2: with only 2 channels the RMS
# norm (an L2 normalisation over channels) is badly conditioned wherever both channels are near
# zero, and fp32 reordering differences grow to ~4e-4 in the decoded frames; with 4 they stay
# around 1e-5.
CONFIGS = {
    # z_dim 4: latents_mean/std are the first 4 Wan values (the config lists must have z_dim entries).
    "tiny": dict(
        model=dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                   temperal_downsample=[False, True, True], dropout=0.0,
                   latents_mean=WAN_LATENTS_MEAN[:4], latents_std=WAN_LATENTS_STD[:4]),
        seed=1001, enc_out_gain=2.0, dec_out_gain=0.7,
        cases=[("f1_16x24", 1, 16, 24), ("f5_16x24", 5, 16, 24), ("f9_16x24", 9, 16, 24)],
        layers_case="f5_16x24",
    ),
    # z_dim 16 with the real latents_mean/latents_std (diffusers defaults, not written explicitly).
    "z16": dict(
        model=dict(base_dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                   temperal_downsample=[False, True, True], dropout=0.0),
        seed=2002, enc_out_gain=2.0, dec_out_gain=1.2,
        cases=[("f1_16x24", 1, 16, 24), ("f5_24x40", 5, 24, 40)],
        layers_case=None,
    ),
}

# Conv weights ~ N(0, gain^2/fan_in) with gain CONV_GAIN, except encoder.conv_out
# (enc_out_gain: posterior mean/logvar of order 1) and decoder.conv_out (dec_out_gain: decoded
# values mostly inside the [-1,1] clamp, a few percent clamped).
CONV_GAIN = 1.0
GAMMA_SD = 0.25       # RMS gammas ~ 1 + N(0, 0.25^2)
BIAS_SD = 0.1         # biases ~ N(0, 0.1^2)

LAYER_MODULES_ENC = ["encoder.conv_in", "encoder.down_blocks.*", "encoder.mid_block.resnets.0",
                     "encoder.mid_block.attentions.0", "encoder.mid_block", "encoder", "quant_conv"]
LAYER_MODULES_DEC = ["post_quant_conv", "decoder.conv_in", "decoder.mid_block.resnets.0",
                     "decoder.mid_block.attentions.0", "decoder.mid_block", "decoder.up_blocks.*",
                     "decoder"]


def randomize(model, seed, enc_out_gain, dec_out_gain):
    """Deterministic non-trivial weights; parameters visited in sorted name order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith(".gamma"):
                p.copy_(1.0 + GAMMA_SD * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(BIAS_SD * torch.randn(p.shape, generator=g))
            elif name.endswith(".weight"):
                gain = {"encoder.conv_out.weight": enc_out_gain,
                        "decoder.conv_out.weight": dec_out_gain}.get(name, CONV_GAIN)
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (gain / math.sqrt(fan_in)))
            else:
                raise RuntimeError(f"unexpected parameter {name}")


def smooth_video(seed, f, h, w):
    """[3,F,H,W] float32 in [-1,1]: a few random travelling sinusoids per channel, squashed by
    tanh, plus a little noise, so every frame differs and convs see structure at all scales."""
    rng = np.random.default_rng(seed)
    t = np.arange(f, dtype=np.float64)[:, None, None]
    y = np.arange(h, dtype=np.float64)[None, :, None]
    x = np.arange(w, dtype=np.float64)[None, None, :]
    out = np.empty((3, f, h, w), dtype=np.float64)
    for c in range(3):
        v = np.zeros((f, h, w))
        for _ in range(4):
            ky, kx = rng.uniform(-0.6, 0.6, size=2)
            kt = rng.uniform(-0.8, 0.8)
            ph = rng.uniform(0, 2 * np.pi)
            v += rng.uniform(0.3, 0.8) * np.sin(ky * y + kx * x + kt * t + ph)
        v += 0.08 * rng.standard_normal((f, h, w))
        out[c] = np.tanh(1.3 * v + rng.uniform(-0.3, 0.3))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


# ---- independent functional reference (full sequence, no chunking, wan.md 2.2/2.3 rules) ----

def _cconv(x, sd, p, pad_t, pad_hw, stride_t=1):
    x = F.pad(x, (pad_hw, pad_hw, pad_hw, pad_hw, 2 * pad_t, 0))
    return F.conv3d(x, sd[p + ".weight"], sd[p + ".bias"], stride=(stride_t, 1, 1))


def _rms(x, gamma):
    c = x.shape[1]
    n = x.norm(2, dim=1, keepdim=True).clamp_min(1e-12)
    return (x / n) * (c ** 0.5) * gamma


def _res(x, sd, p):
    h = _cconv(x, sd, p + ".conv_shortcut", 0, 0) if p + ".conv_shortcut.weight" in sd else x
    y = _cconv(F.silu(_rms(x, sd[p + ".norm1.gamma"])), sd, p + ".conv1", 1, 1)
    y = _cconv(F.silu(_rms(y, sd[p + ".norm2.gamma"])), sd, p + ".conv2", 1, 1)
    return y + h


def _attn(x, sd, p):
    b, c, t, hh, ww = x.shape
    y = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, hh, ww)
    y = _rms(y, sd[p + ".norm.gamma"])
    qkv = F.conv2d(y, sd[p + ".to_qkv.weight"], sd[p + ".to_qkv.bias"]).reshape(b * t, 3 * c, hh * ww)
    q, k, v = qkv[:, :c].transpose(1, 2), qkv[:, c:2 * c].transpose(1, 2), qkv[:, 2 * c:].transpose(1, 2)
    a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1) @ v      # [bt, hw, c]
    y = a.transpose(1, 2).reshape(b * t, c, hh, ww)
    y = F.conv2d(y, sd[p + ".proj.weight"], sd[p + ".proj.bias"])
    return y.reshape(b, t, c, hh, ww).permute(0, 2, 1, 3, 4) + x


def _per_frame(x, fn):
    b, c, t, hh, ww = x.shape
    y = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, hh, ww))
    return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


def _mid(x, sd, p, rec):
    x = _res(x, sd, p + ".resnets.0"); rec(p + ".resnets.0", x)
    x = _attn(x, sd, p + ".attentions.0"); rec(p + ".attentions.0", x)
    x = _res(x, sd, p + ".resnets.1"); rec(p, x)
    return x


def ref_encode(sd, x, rec):
    x = _cconv(x, sd, "encoder.conv_in", 1, 1); rec("encoder.conv_in", x)
    i = 0
    while f"encoder.down_blocks.{i}.norm1.gamma" in sd or f"encoder.down_blocks.{i}.resample.1.weight" in sd:
        p = f"encoder.down_blocks.{i}"
        if p + ".resample.1.weight" in sd:     # downsample2d / downsample3d
            w, bias = sd[p + ".resample.1.weight"], sd[p + ".resample.1.bias"]
            g = _per_frame(x, lambda y: F.conv2d(F.pad(y, (0, 1, 0, 1)), w, bias, stride=2))
            if p + ".time_conv.weight" in sd and g.shape[2] > 1:
                # out[0] = g0, out[j] = time_conv(g_{2j-2}, g_{2j-1}, g_{2j}), no padding, stride 2
                g = torch.cat([g[:, :, :1], _cconv(g, sd, p + ".time_conv", 0, 0, stride_t=2)], 2)
            x = g
        else:
            x = _res(x, sd, p)
        rec(p, x)
        i += 1
    x = _mid(x, sd, "encoder.mid_block", rec)
    x = _cconv(F.silu(_rms(x, sd["encoder.norm_out.gamma"])), sd, "encoder.conv_out", 1, 1)
    rec("encoder", x)
    x = _cconv(x, sd, "quant_conv", 0, 0); rec("quant_conv", x)
    return x


def ref_decode(sd, z, rec):
    x = _cconv(z, sd, "post_quant_conv", 0, 0); rec("post_quant_conv", x)
    x = _cconv(x, sd, "decoder.conv_in", 1, 1); rec("decoder.conv_in", x)
    x = _mid(x, sd, "decoder.mid_block", rec)
    i = 0
    while f"decoder.up_blocks.{i}.resnets.0.norm1.gamma" in sd:
        p = f"decoder.up_blocks.{i}"
        j = 0
        while f"{p}.resnets.{j}.norm1.gamma" in sd:
            x = _res(x, sd, f"{p}.resnets.{j}")
            j += 1
        u = p + ".upsamplers.0"
        if u + ".resample.1.weight" in sd:
            if u + ".time_conv.weight" in sd and x.shape[2] > 1:
                # frame 0 passes; frames 1.. go through a causal (2 zero frames) time_conv C->2C,
                # halves interleaved in time: 2k <- [0,C), 2k+1 <- [C,2C).
                b, c, t, hh, ww = x.shape
                tc = _cconv(x[:, :, 1:], sd, u + ".time_conv", 1, 0).reshape(b, 2, c, t - 1, hh, ww)
                tc = torch.stack((tc[:, 0], tc[:, 1]), 3).reshape(b, c, 2 * (t - 1), hh, ww)
                x = torch.cat([x[:, :, :1], tc], 2)
            w, bias = sd[u + ".resample.1.weight"], sd[u + ".resample.1.bias"]
            x = _per_frame(x, lambda y: F.conv2d(y.repeat_interleave(2, 2).repeat_interleave(2, 3),
                                                 w, bias, padding=1))
        rec(p, x)
        i += 1
    x = _cconv(F.silu(_rms(x, sd["decoder.norm_out.gamma"])), sd, "decoder.conv_out", 1, 1)
    rec("decoder", x)
    return x.clamp(-1.0, 1.0)


# ---- recording ------------------------------------------------------------------------------

def save_npy(path, t):
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t
    np.save(path, np.ascontiguousarray(a, dtype=np.float32))


class Hooks:
    """Forward hooks on selected modules; outputs of repeated calls (one per encoder chunk or
    decoder latent frame) are concatenated along time (dim 2)."""

    def __init__(self, model, patterns):
        self.out = {}
        self.handles = []
        names = [n for n, _ in model.named_modules()]
        wanted = []
        for pat in patterns:
            if pat.endswith(".*"):
                base = pat[:-2]
                wanted += [n for n in names if n.startswith(base + ".") and n[len(base) + 1:].isdigit()]
            else:
                wanted.append(pat)
        mods = dict(model.named_modules())
        for n in wanted:
            self.handles.append(mods[n].register_forward_hook(self._make(n)))

    def _make(self, name):
        def hook(_m, _inp, out):
            self.out.setdefault(name, []).append(out.detach().clone())
        return hook

    def result(self):
        return {k: torch.cat(v, 2) for k, v in self.out.items()}

    def remove(self):
        for h in self.handles:
            h.remove()


def wan_normalize(z, cfg):
    zd = cfg.z_dim
    mean = torch.tensor(cfg.latents_mean).view(1, zd, 1, 1, 1).to(z.dtype)
    inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, zd, 1, 1, 1).to(z.dtype)
    return (z - mean) * inv_std


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "wan_vae"))
    ap.add_argument("--no-check", action="store_true", help="skip the functional re-implementation check")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)

    os.makedirs(args.out, exist_ok=True)
    manifest = {
        "generator": "scripts/make-vae-fixtures.py",
        "versions": {"diffusers": diffusers.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "configs": {},
    }
    worst = {}
    for cname, spec in CONFIGS.items():
        cdir = os.path.join(args.out, cname)
        if os.path.isdir(cdir):
            shutil.rmtree(cdir)
        torch.manual_seed(spec["seed"])
        vae = AutoencoderKLWan(**spec["model"]).eval()
        randomize(vae, spec["seed"], spec["enc_out_gain"], spec["dec_out_gain"])
        vae.save_pretrained(cdir, safe_serialization=True)
        # Reload from disk so the fixtures come from exactly the stored weights.
        vae = AutoencoderKLWan.from_pretrained(cdir).eval()
        cfg = vae.config
        sd = {k: v.detach().clone() for k, v in vae.state_dict().items()}
        cman = {"model": {k: cfg[k] for k in ("base_dim", "z_dim", "dim_mult", "num_res_blocks",
                                             "temperal_downsample")},
                "seed": spec["seed"], "params": sum(v.numel() for v in sd.values()),
                "tensors": len(sd), "cases": {}}
        for ci, (case, f, h, w) in enumerate(spec["cases"]):
            kdir = os.path.join(cdir, "cases", case)
            os.makedirs(kdir)
            x = torch.from_numpy(smooth_video(spec["seed"] * 100 + ci, f, h, w))[None]
            want_layers = case == spec["layers_case"]
            with torch.no_grad():
                hooks = Hooks(vae, LAYER_MODULES_ENC) if want_layers else None
                post = vae.encode(x).latent_dist
                enc_layers = hooks.result() if hooks else {}
                if hooks:
                    hooks.remove()
                hooks = Hooks(vae, LAYER_MODULES_DEC) if want_layers else None
                dec = vae.decode(post.mean).sample
                dec_layers = hooks.result() if hooks else {}
                if hooks:
                    hooks.remove()
                mean, logvar = post.mean, post.logvar          # logvar is clamped to [-30,20]
                znorm = wan_normalize(mean, cfg)
                geps = torch.Generator().manual_seed(spec["seed"] * 100 + 50 + ci)
                sample = post.sample(generator=geps)           # mean + std*eps, eps ~ randn(gen)
                eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(spec["seed"] * 100 + 50 + ci))
                if not torch.equal(sample, mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * eps):
                    raise SystemExit("sample != mean + exp(0.5*logvar)*eps")
                tf = 1 + (f - 1) // 4
                assert mean.shape == (1, cfg.z_dim, tf, h // 8, w // 8), mean.shape
                assert dec.shape == (1, 3, 1 + 4 * (tf - 1), h, w), dec.shape

                if not args.no_check:
                    rl = {}
                    rec = (lambda n, t: rl.__setitem__(n, t)) if want_layers else (lambda n, t: None)
                    henc = ref_encode(sd, x, rec)
                    rdec = ref_decode(sd, post.mean, rec)
                    diffs = {"posterior": (henc - torch.cat([mean, post.parameters[:, cfg.z_dim:]], 1)).abs().max().item(),
                             "decoded": (rdec - dec).abs().max().item()}
                    for n, t in {**enc_layers, **dec_layers}.items():
                        if t.shape != rl[n].shape:
                            raise SystemExit(f"{cname}/{case}: layer {n} shape {tuple(t.shape)} vs ref {tuple(rl[n].shape)}")
                        diffs["layer:" + n] = (t - rl[n]).abs().max().item()
                    for k, v in diffs.items():
                        worst[k.split(":")[0]] = max(worst.get(k.split(":")[0], 0.0), v)
                        if not v < 1e-4:
                            raise SystemExit(f"{cname}/{case}: {k} differs from the wan.md re-implementation by {v:g}")

            files = {"input": x[0], "posterior_mean": mean[0], "logvar": logvar[0], "latents_norm": znorm[0],
                     "sample_eps": eps[0], "sample": sample[0], "decoded": dec[0]}
            for n, t in files.items():
                save_npy(os.path.join(kdir, n + ".npy"), t)
            kman = {"frames": f, "height": h, "width": w, "latent_frames": tf,
                    "shapes": {n: list(t.shape) for n, t in files.items()},
                    "stats": {"posterior_mean_std": round(mean.std().item(), 4),
                              "logvar_min": round(logvar.min().item(), 4), "logvar_max": round(logvar.max().item(), 4),
                              "decoded_std": round(dec.std().item(), 4),
                              "decoded_clamped_fraction": round((dec.abs() == 1.0).float().mean().item(), 4)},
                     "seeds": {"input": spec["seed"] * 100 + ci, "sample_eps": spec["seed"] * 100 + 50 + ci}}
            if want_layers:
                ldir = os.path.join(kdir, "layers")
                os.makedirs(ldir)
                lines = [f"Per-layer outputs for {cname}/{case}: the output of each module, with the outputs of",
                         "its repeated calls (encoder: one call per chunk, frames 1 then 4 at a time; decoder: one",
                         "call per latent frame) concatenated along time. Batch dim dropped; float32, C order.",
                         "Encoder part from vae.encode(input), decoder part from vae.decode(posterior_mean).",
                         "'encoder' = encoder output before quant_conv; 'decoder' = decoder output before the clamp.",
                         "", "order  file  shape [C,T,H,W]"]
                for k, (n, t) in enumerate(list(enc_layers.items()) + list(dec_layers.items())):
                    save_npy(os.path.join(ldir, n + ".npy"), t[0])
                    lines.append(f"{k:2d}  {n}.npy  {list(t[0].shape)}")
                with open(os.path.join(ldir, "README"), "w") as fh:
                    fh.write("\n".join(lines) + "\n")
                kman["layers"] = [n for n in list(enc_layers) + list(dec_layers)]
            cman["cases"][case] = kman
        manifest["configs"][cname] = cman

    # checksums of everything written (the determinism check compares these)
    sums = {}
    for dp, _dn, fnames in sorted(os.walk(args.out)):
        for fn in sorted(fnames):
            p = os.path.join(dp, fn)
            rel = os.path.relpath(p, args.out)
            if rel in ("manifest.json", "README.md"):
                continue
            sums[rel] = sha256(p)
    manifest["sha256"] = dict(sorted(sums.items()))
    if worst:
        manifest["check_max_abs_diff_vs_functional_reference"] = {k: float(f"{v:.3g}") for k, v in worst.items()}
    with open(os.path.join(args.out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=False)
        fh.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(args.out) for fn in fns)
    print(f"make-vae-fixtures: wrote {args.out} ({total} bytes)"
          + (f"; max |diffusers - functional ref|: {manifest['check_max_abs_diff_vs_functional_reference']}" if worst else ""))


if __name__ == "__main__":
    main()
