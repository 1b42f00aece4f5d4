#!/usr/bin/env python3
"""make-wan-transformer-fixtures.py: regenerate tests/fixtures/wan_transformer/.

Builds tiny, randomly initialised diffusers `WanTransformer3DModel`s (the real class, the real
block structure and file layout, only narrower), saves them with `save_pretrained` and records
what the C parity tests of the Wan transformer compare against (forward f32 and bf16, autograd
gradients of a fixed loss, a PEFT LoRA with its forward and gradients, and the same weights in
the original-Wan and ComfyUI checkpoint layouts). tests/fixtures/wan_transformer/README.md
documents every file; reference/wan.md section 1 the model.

Configs (all patch [1,2,2], 2 layers, rope_max_seq_len 1024):
  a  2 heads x 16 (D 32), ffn 64, text_dim 32, freq_dim 32, in/out 16, eps 1e-6; f32 weights in
     one file. Input [1,16,1,8,8] (one latent frame, 4x4 patches), 7 text rows, t = 999.
     Also: the LoRA, and the weights as an original-Wan checkpoint and as a ComfyUI single file.
  b  3 heads x 12 (D 36), ffn 48, text_dim 16, freq_dim 16, in/out 4, eps 1e-6; f32, one file.
     Input [2,4,3,6,10] (3 x 3 x 5 patches), timesteps [999, 417.3], text 512 rows: 9 and 4
     valid rows, the rest exact zeros (the Wan pipeline's padding, wan.md 3.4). Also: the LoRA.
  c  2 heads x 12 (D 24), ffn 40, text_dim 24, freq_dim 32, in 16 / out 4, eps 1e-3 (large
     enough that using 1e-6 instead is visible), cross_attn_norm true; weights bf16-representable, saved as a bf16 model loaded the diffusers
     way (_keep_in_fp32_modules stay F32, everything else BF16) in >= 2 shards + index.json.
     Input [1,16,2,4,6] (2 x 2 x 3 patches), 20 text rows, t = 62.5.

Checks made here before anything is written (the script stops if one fails):
  * an independent float64 re-implementation of the forward pass written from wan.md section 1,
    reading the ORIGINAL Wan names (so the norm2/norm3 swap is checked by meaning, not only by a
    round trip), agrees with diffusers' f32 output to REF_TOL (relative to max |out|);
  * the saved directory reloads (from_pretrained) to the same weights and outputs, bit for bit;
    the bf16 load keeps exactly the tensors wan.md 1.4 lists in f32;
  * f32 autograd gradients agree with a float64 autograd run to GRAD_TOL (per tensor, relative to
    its max), and every parameter's gradient is non-zero;
  * an int64 timestep gives the bit-identical output to the same value as float32;
  * original-Wan and ComfyUI files convert back with diffusers' own converter
    (convert_wan_transformer_to_diffusers) and load with from_single_file to the exact weights;
  * both LoRA files load with diffusers (WanPipeline.lora_state_dict + load_lora_into_transformer)
    into a fresh base model and reproduce lora_out.npy bit for bit.

Python is only needed to regenerate the fixtures, never by `make test`. Needs torch, diffusers,
transformers, peft, safetensors and numpy (PyPI). Deterministic: one thread, deterministic
algorithms, fixed seeds.

Usage: scripts/make-wan-transformer-fixtures.py [--out DIR]
"""

import argparse
import copy
import json
import math
import os
import re
import shutil
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import diffusers
    import peft
    import safetensors
    import transformers
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    from diffusers import WanPipeline, WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
except ImportError as e:  # pragma: no cover
    sys.exit(f"make-wan-transformer-fixtures.py: {e}; install with: "
             "pip install torch diffusers transformers peft safetensors numpy")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
REF_TOL = 2e-5     # diffusers f32 vs float64 re-implementation, relative to max |out|
GRAD_TOL = 1e-3    # f32 autograd vs float64 autograd, per tensor, relative to the tensor's max
TEXT_LEN = 512
LORA_R, LORA_ALPHA = 4, 8
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]
KEEP_FP32 = WanTransformer3DModel._keep_in_fp32_modules

CONFIGS = {
    "a": dict(
        config=dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=16, in_channels=16,
                    out_channels=16, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", eps=1e-6),
        seed=7101, x_shape=[1, 16, 1, 8, 8], timesteps=[999.0], text_valid=[7], text_len=None,
        bf16_file=False, shard=None, lora=True, alt_formats=True),
    "b": dict(
        config=dict(patch_size=[1, 2, 2], num_attention_heads=3, attention_head_dim=12, in_channels=4,
                    out_channels=4, text_dim=16, freq_dim=16, ffn_dim=48, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", eps=1e-6),
        seed=7102, x_shape=[2, 4, 3, 6, 10], timesteps=[999.0, 417.3], text_valid=[9, 4], text_len=TEXT_LEN,
        bf16_file=False, shard=None, lora=True, alt_formats=False),
    "c": dict(
        config=dict(patch_size=[1, 2, 2], num_attention_heads=2, attention_head_dim=12, in_channels=16,
                    out_channels=4, text_dim=24, freq_dim=32, ffn_dim=40, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", eps=1e-3),
        seed=7103, x_shape=[1, 16, 2, 4, 6], timesteps=[62.5], text_valid=[20], text_len=None,
        bf16_file=True, shard="20KB", lora=False, alt_formats=False),
}


def fail(msg):
    sys.exit(f"make-wan-transformer-fixtures.py: {msg}")


def save_npy(path, a):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    np.save(path, np.ascontiguousarray(a))


def bf16_round(t):
    return t.to(torch.bfloat16).to(torch.float32)


def kept_fp32(name):
    """diffusers' rule (model_loading_utils.py): a tensor stays fp32 in a bf16 load when one of
    the dotted components of its name is in _keep_in_fp32_modules."""
    return any(m in name.split(".") for m in KEEP_FP32)


def relerr(a, b):
    """max |a - b| / max |b| (b the reference)."""
    a, b = a.double(), b.double()
    den = float(b.abs().max())
    return float((a - b).abs().max()) / (den if den > 0 else 1.0)


# ------------------------------------------------------------------------------------------------
# Names: diffusers -> original Wan (the reverse of diffusers' TRANSFORMER_KEYS_RENAME_DICT,
# wan.md 1.6). Every key must match exactly one rule.

_ATTN = {"to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o", "norm_q": "norm_q", "norm_k": "norm_k"}
_TOP = {
    "patch_embedding": "patch_embedding",
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
}


def to_original(name):
    if name == "scale_shift_table":
        return "head.modulation"
    m = re.fullmatch(r"(.*)\.(weight|bias)", name)
    if m and m.group(1) in _TOP:
        return f"{_TOP[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"blocks\.(\d+)\.(.*)", name)
    if not m:
        fail(f"no original name for {name}")
    i, rest = m.groups()
    if rest == "scale_shift_table":
        return f"blocks.{i}.modulation"
    m = re.fullmatch(r"(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0|norm_q|norm_k)\.(weight|bias)", rest)
    if m:
        a = "self_attn" if m.group(1) == "attn1" else "cross_attn"
        return f"blocks.{i}.{a}.{_ATTN[m.group(2)]}.{m.group(3)}"
    m = re.fullmatch(r"norm2\.(weight|bias)", rest)  # the affine cross-attention norm: original norm3
    if m:
        return f"blocks.{i}.norm3.{m.group(1)}"
    m = re.fullmatch(r"ffn\.net\.(0\.proj|2)\.(weight|bias)", rest)
    if m:
        return f"blocks.{i}.ffn.{m.group(1)[0]}.{m.group(2)}"
    fail(f"no original name for {name}")


def original_config(cfg):
    """The original Wan WanModel config.json for a diffusers config. The released 1.3B file
    (wan.md 1.1) has only _class_name, dim, eps, ffn_dim, freq_dim, in_dim, model_type,
    num_heads, num_layers, out_dim, text_len; the tiny models also need text_dim, patch_size,
    window_size, qk_norm and cross_attn_norm, which WanModel otherwise takes from its defaults
    (4096, [1,2,2], [-1,-1], true, true)."""
    return {
        "_class_name": "WanModel",
        "model_type": "t2v",
        "patch_size": list(cfg["patch_size"]),
        "text_len": TEXT_LEN,
        "in_dim": cfg["in_channels"],
        "dim": cfg["num_attention_heads"] * cfg["attention_head_dim"],
        "ffn_dim": cfg["ffn_dim"],
        "freq_dim": cfg["freq_dim"],
        "text_dim": cfg["text_dim"],
        "out_dim": cfg["out_channels"],
        "num_heads": cfg["num_attention_heads"],
        "num_layers": cfg["num_layers"],
        "window_size": [-1, -1],
        "qk_norm": True,
        "cross_attn_norm": cfg["cross_attn_norm"],
        "eps": cfg["eps"],
    }


# ------------------------------------------------------------------------------------------------
# Independent float64 forward pass, from wan.md section 1, over ORIGINAL Wan names.

def ref_forward(sd, cfg, x, t, ctx):
    sd = {k: v.double() for k, v in sd.items()}
    x, t, ctx = x.double(), t.double(), ctx.double()
    eps = cfg["eps"]
    nh, hd = cfg["num_attention_heads"], cfg["attention_head_dim"]
    D = nh * hd
    pt, ph, pw = cfg["patch_size"]
    B, C, Fr, H, W = x.shape
    Fp, Hp, Wp = Fr // pt, H // ph, W // pw
    N = Fp * Hp * Wp

    def lin(v, p):
        return v @ sd[p + ".weight"].T + sd[p + ".bias"]

    def ln(v):
        mu = v.mean(-1, keepdim=True)
        var = ((v - mu) ** 2).mean(-1, keepdim=True)
        return (v - mu) / torch.sqrt(var + eps)

    def rms(v, w):
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps) * w

    def gelu_tanh(v):
        return 0.5 * v * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))

    # patch embedding as a matmul over (c, kt, kh, kw) patches; token n = f*H'*W' + i*W' + j
    patches = x.reshape(B, C, Fp, pt, Hp, ph, Wp, pw).permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, N, -1)
    h = patches @ sd["patch_embedding.weight"].reshape(D, -1).T + sd["patch_embedding.bias"]

    # time: sinusoid [cos | sin], freq_k = 10000^(-k/half)
    half = cfg["freq_dim"] // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    arg = t[:, None] * freqs[None]
    sinus = torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)
    temb = lin(F.silu(lin(sinus, "time_embedding.0")), "time_embedding.2")          # [B, D]
    e0 = lin(F.silu(temb), "time_projection.1").reshape(B, 6, D)
    context = lin(gelu_tanh(lin(ctx, "text_embedding.0")), "text_embedding.2")     # [B, L, D]

    # rotary angles per token: [time | height | width] pair frequencies
    dh = 2 * (hd // 6)
    dt = hd - 2 * dh

    def inv(dim):
        return 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    f_i, i_i, j_i = torch.meshgrid(torch.arange(Fp), torch.arange(Hp), torch.arange(Wp), indexing="ij")
    ang = torch.cat([f_i.reshape(-1, 1).double() * inv(dt), i_i.reshape(-1, 1).double() * inv(dh),
                     j_i.reshape(-1, 1).double() * inv(dh)], dim=1)                  # [N, hd/2]
    rot = torch.polar(torch.ones_like(ang), ang)

    def rope(q):  # q [B, N, nh, hd]; interleaved pairs (q[2k], q[2k+1])
        qc = torch.view_as_complex(q.reshape(*q.shape[:-1], hd // 2, 2).contiguous())
        return torch.view_as_real(qc * rot[None, :, None, :]).reshape(q.shape)

    def attention(prefix, xq, xkv, use_rope):
        q = rms(lin(xq, prefix + ".q"), sd[prefix + ".norm_q.weight"])
        k = rms(lin(xkv, prefix + ".k"), sd[prefix + ".norm_k.weight"])
        v = lin(xkv, prefix + ".v")
        q = q.reshape(B, -1, nh, hd)
        k = k.reshape(B, -1, nh, hd)
        v = v.reshape(B, -1, nh, hd)
        if use_rope:
            q, k = rope(q), rope(k)
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        o = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, dim=-1), v).reshape(B, -1, D)
        return lin(o, prefix + ".o")

    for i in range(cfg["num_layers"]):
        p = f"blocks.{i}"
        e = sd[p + ".modulation"] + e0                                                  # [B, 6, D]
        sh, sc, g, csh, csc, cg = [e[:, k:k + 1] for k in range(6)]
        y = ln(h) * (1 + sc) + sh
        h = h + attention(p + ".self_attn", y, y, True) * g
        y = ln(h) * sd[p + ".norm3.weight"] + sd[p + ".norm3.bias"] if cfg["cross_attn_norm"] else h
        h = h + attention(p + ".cross_attn", y, context, False)
        y = ln(h) * (1 + csc) + csh
        h = h + lin(gelu_tanh(lin(y, p + ".ffn.0")), p + ".ffn.2") * cg

    e = sd["head.modulation"] + temb[:, None, :]                                        # [B, 2, D]
    y = lin(ln(h) * (1 + e[:, 1:2]) + e[:, 0:1], "head.head")                           # [B, N, pt*ph*pw*Co]
    Co = y.shape[-1] // (pt * ph * pw)
    y = y.reshape(B, Fp, Hp, Wp, pt, ph, pw, Co).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return y.reshape(B, Co, Fp * pt, Hp * ph, Wp * pw)


# ------------------------------------------------------------------------------------------------

def randomize(model, seed, round_bf16):
    """Weights that make every parameter matter: norm weights 1 + 0.2 randn (not ones), every bias
    0.1 randn (not the default tiny uniform), modulation tables 0.3 randn, q/k norm weights
    1.5 (1 + 0.2 randn) so attention is not near uniform. Linear/conv weights keep torch's default
    init (kaiming-uniform, nonzero, proj_out included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm_q" in name or "norm_k" in name:
                p.copy_(1.5 * (1.0 + 0.2 * torch.randn(p.shape, generator=g)))
            elif name.endswith("norm2.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("scale_shift_table"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            if round_bf16:
                p.copy_(bf16_round(p))


def load(path, dtype):
    """from_pretrained, then every parameter copied to fresh (allocator-aligned) memory: tensors
    mmapped from a safetensors file sit at unaligned addresses and the CPU GEMM then takes another
    kernel path (last-bit differences, up to ~4e-7 here); after the copy a reloaded model
    reproduces the in-memory model bit for bit."""
    m = WanTransformer3DModel.from_pretrained(path, torch_dtype=dtype).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.data = p.data.clone()
    return m


def forward(model, x, t, ctx):
    return model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]


def grads_of(model, x, t, ctx, dout, want_inputs=True):
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(want_inputs)
    ctx = ctx.clone().requires_grad_(want_inputs)
    out = forward(model, x, t, ctx)
    loss = (out * dout).sum()
    loss.backward()
    g = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), loss.detach(), g, (x.grad if want_inputs else None), (ctx.grad if want_inputs else None)


def make_inputs(cfg, spec, seed):
    g = torch.Generator().manual_seed(seed)
    x = bf16_round(torch.randn(spec["x_shape"], generator=g))
    B = spec["x_shape"][0]
    L = spec["text_len"] or max(spec["text_valid"])
    ctx = torch.zeros(B, L, cfg["text_dim"])
    for b, n in enumerate(spec["text_valid"]):
        ctx[b, :n] = bf16_round(torch.randn(n, cfg["text_dim"], generator=g))
    t = torch.tensor(spec["timesteps"], dtype=torch.float32)
    out_shape = list(spec["x_shape"])
    out_shape[1] = cfg["out_channels"]
    dout = torch.randn(out_shape, generator=g)
    return x, t, ctx, dout


def safetensors_dtypes(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), "pt") as h:
                for k in h.keys():
                    out[k] = h.get_slice(k).get_dtype()
    return out


def same_state(a, b, what):
    if set(a) != set(b):
        fail(f"{what}: key sets differ: {sorted(set(a) ^ set(b))[:6]}")
    for k in a:
        if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k], b[k]):
            fail(f"{what}: tensor {k} differs")


# ------------------------------------------------------------------------------------------------

def canonical_metadata_order(path):
    """safetensors writes the __metadata__ map in hash order (two keys here: format and
    lora_adapter_metadata); rewrite the header with those keys sorted so the file is
    deterministic. Tensor entries, offsets and data are kept; the header is re-padded with spaces
    to a multiple of 8 as safetensors does."""
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    md = hdr.pop("__metadata__")
    new = {"__metadata__": dict(sorted(md.items())), **hdr}
    text = json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    if load_file(path).keys() != hdr.keys() - {"__metadata__"}:
        fail(f"{path}: header rewrite lost tensors")


def sort_target_modules(path):
    """PEFT keeps target_modules as a set and writes it in hash order; sort it so the file is
    deterministic."""
    with open(path) as f:
        c = json.load(f)
    c["target_modules"] = sorted(c["target_modules"])
    with open(path, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")


def lora_module_original(module):
    """blocks.0.attn1.to_q -> blocks.0.self_attn.q (via the weight name mapping)."""
    return to_original(module + ".weight")[: -len(".weight")]


def make_lora(d, base_dir, cfg, spec, x, t, ctx, dout, report):
    torch.manual_seed(spec["seed"] + 10)  # PEFT's kaiming-uniform init of A draws from the global RNG
    m = load(base_dir, torch.float32)
    m.add_adapter(LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, init_lora_weights=True, lora_dropout=0.0,
                             target_modules=LORA_TARGETS))
    g = torch.Generator().manual_seed(spec["seed"] + 11)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.requires_grad_("lora_" in n)
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    lora_names = [n for n, p in m.named_parameters() if p.requires_grad]
    n_mod = cfg["num_layers"] * 10
    if len(lora_names) != 2 * n_mod:
        fail(f"LoRA: {len(lora_names)} trainable tensors, expected {2 * n_mod}")
    params = get_peft_model_state_dict(m)  # blocks.0.attn1.to_q.lora_A.weight ...
    if len(params) != 2 * n_mod:
        fail("LoRA state dict size")

    out, loss, grads, _, _ = grads_of(m, x, t, ctx, dout, want_inputs=False)
    grads = {k.replace(".default", ""): v for k, v in grads.items()}
    if set(grads) != set(params):
        fail("LoRA gradient names differ from the adapter state dict")
    base_out = np.load(os.path.join(d, "out.npy"))
    change = relerr(torch.from_numpy(base_out), out)
    zero = [k for k, v in grads.items() if float(v.abs().max()) == 0.0]
    if zero:
        fail(f"LoRA gradients identically zero: {zero[:4]}")

    m64 = copy.deepcopy(m).double()
    _, _, g64, _, _ = grads_of(m64, x.double(), t, ctx.double(), dout.double(), want_inputs=False)
    g64 = {k.replace(".default", ""): v for k, v in g64.items()}
    save_npy(os.path.join(d, "lora_out.npy"), out)
    save_file({k: v.contiguous() for k, v in sorted(grads.items())}, os.path.join(d, "lora_grads.safetensors"))
    save_file({k: v.float().contiguous() for k, v in sorted(g64.items())}, os.path.join(d, "lora_grads_f64.safetensors"))
    ld = os.path.join(d, "lora")
    os.makedirs(ld)
    save_file({k: v.contiguous() for k, v in sorted(params.items())}, os.path.join(ld, "lora_params.safetensors"))

    # (1) diffusion_model.* (diffusion-pipe / ComfyUI naming), alpha/r folded into B, adapter_config beside
    scale = LORA_ALPHA / LORA_R
    dm = {}
    for k, v in params.items():
        mod, ab = re.fullmatch(r"(.*)\.(lora_A|lora_B)\.weight", k).groups()
        dm[f"diffusion_model.{lora_module_original(mod)}.{ab}.weight"] = (v * scale if ab == "lora_B" else v).contiguous()
    dm_path = os.path.join(ld, "adapter_model.safetensors")
    save_file(dict(sorted(dm.items())), dm_path, metadata={"format": "pt"})
    targets = sorted({lora_module_original(re.fullmatch(r"(.*)\.lora_[AB]\.weight", k).group(1)) for k in params})
    LoraConfig(r=LORA_R, lora_alpha=LORA_R, lora_dropout=0.0, bias="none", target_modules=targets).save_pretrained(ld)
    sort_target_modules(os.path.join(ld, "adapter_config.json"))

    # (2) diffusers' own format: transformer.* keys, B unfolded, alpha in the lora_adapter_metadata header
    dd = os.path.join(ld, "diffusers")
    meta = m.peft_config["default"].to_dict()
    meta["target_modules"] = sorted(meta["target_modules"])  # a set: its order would follow the hash seed
    WanPipeline.save_lora_weights(dd, transformer_lora_layers=params, transformer_lora_adapter_metadata=meta)
    canonical_metadata_order(os.path.join(dd, "pytorch_lora_weights.safetensors"))

    # both must load with diffusers into a fresh base model and give lora_out bit for bit
    for path in (dm_path, os.path.join(dd, "pytorch_lora_weights.safetensors")):
        fresh = load(base_dir, torch.float32)
        sd, md = WanPipeline.lora_state_dict(path, return_lora_metadata=True)
        WanPipeline.load_lora_into_transformer(sd, transformer=fresh, metadata=md)
        with torch.no_grad():
            o2 = forward(fresh, x, t, ctx)
        if not torch.equal(o2, out):
            fail(f"LoRA file {os.path.relpath(path, d)} reloads to a different output ({relerr(o2, out):.2e})")
    report.append(f"  lora: {len(params)} tensors, r {LORA_R} alpha {LORA_ALPHA}; output changed by "
                  f"{change:.2f} (rel. to max); loss {float(loss):.6g}; both files reload bit-exact")


def make_alt_formats(d, base_dir, cfg, model, report):
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    orig = {to_original(k): v for k, v in sd.items()}
    if len(orig) != len(sd):
        fail("original-name mapping is not one-to-one")
    od = os.path.join(d, "original")
    os.makedirs(od)
    save_file(dict(sorted(orig.items())), os.path.join(od, "diffusion_pytorch_model.safetensors"),
              metadata={"format": "pt"})
    with open(os.path.join(od, "config.json"), "w") as f:
        json.dump(original_config(cfg), f, indent=2)
        f.write("\n")
    cd = os.path.join(d, "comfyui")
    os.makedirs(cd)
    comfy = {"model.diffusion_model." + k: v for k, v in orig.items()}
    cpath = os.path.join(cd, "wan_tiny_a.safetensors")
    save_file(dict(sorted(comfy.items())), cpath, metadata={"format": "pt"})

    for what, path in (("original", os.path.join(od, "diffusion_pytorch_model.safetensors")), ("comfyui", cpath)):
        back = convert_wan_transformer_to_diffusers(load_file(path))
        same_state(back, sd, f"{what} -> diffusers converter")
        m2 = WanTransformer3DModel.from_single_file(path, config=base_dir, torch_dtype=torch.float32)
        same_state({k: v for k, v in m2.state_dict().items()}, sd, f"{what} from_single_file")
    report.append("  original-Wan and ComfyUI files: converter and from_single_file give the exact weights")
    return orig


def make_config(out, name, spec, report):
    cfg = spec["config"]
    torch.manual_seed(spec["seed"])
    model = WanTransformer3DModel(**cfg).eval()
    randomize(model, spec["seed"] + 1, spec["bf16_file"])
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    td = os.path.join(d, "transformer")
    kw = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    if spec["bf16_file"]:
        # what save_pretrained writes for a model loaded with torch_dtype=bfloat16
        mb = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in mb.named_parameters():
                if not kept_fp32(n):
                    p.data = p.data.to(torch.bfloat16)
        mb.save_pretrained(td, **kw)
        shards = [f for f in os.listdir(td) if f.endswith(".safetensors")]
        if len(shards) < 2 or not os.path.exists(os.path.join(td, "diffusion_pytorch_model.safetensors.index.json")):
            fail(f"{name}: expected >= 2 shards and an index, got {shards}")
    else:
        model.save_pretrained(td, **kw)
    dtypes = safetensors_dtypes(td)
    for k, dt in dtypes.items():
        want = "F32" if (not spec["bf16_file"] or kept_fp32(k)) else "BF16"
        if dt != want:
            fail(f"{name}: {k} stored as {dt}, expected {want}")

    m32 = load(td, torch.float32)
    same_state(m32.state_dict(), model.state_dict(), f"{name}: f32 reload")
    m16 = load(td, torch.bfloat16)
    for n, p in m16.named_parameters():
        want = torch.float32 if kept_fp32(n) else torch.bfloat16
        if p.dtype != want:
            fail(f"{name}: bf16 load has {n} as {p.dtype}, expected {want} (wan.md 1.4)")
        if not torch.equal(p.float(), bf16_round(model.state_dict()[n]) if want == torch.bfloat16
                           else model.state_dict()[n]):
            fail(f"{name}: bf16 load of {n} is not the rounded f32 weight")

    x, t, ctx, dout = make_inputs(cfg, spec, spec["seed"] + 2)
    with torch.no_grad():
        out = forward(model, x, t, ctx)
        out_re = forward(m32, x, t, ctx)
        out16 = forward(m16, x.to(torch.bfloat16), t, ctx.to(torch.bfloat16))
    if out16.dtype != torch.bfloat16:
        fail(f"{name}: bf16 run returned {out16.dtype}")
    out16 = out16.float()
    if not torch.equal(out, out_re):
        fail(f"{name}: reloaded model gives a different output")
    if not torch.isfinite(out).all() or not torch.isfinite(out16).all():
        fail(f"{name}: non-finite output")
    if all(float(v) == int(v) for v in spec["timesteps"]):
        with torch.no_grad():
            out_i = forward(model, x, t.to(torch.int64), ctx)
        if not torch.equal(out_i, out):
            fail(f"{name}: int64 timestep gives a different output than float32")

    orig = {to_original(k): v for k, v in model.state_dict().items()}
    ref = ref_forward(orig, cfg, x, t, ctx)
    e_ref = relerr(out, ref)
    if e_ref > REF_TOL:
        fail(f"{name}: diffusers f32 vs float64 re-implementation {e_ref:.2e} > {REF_TOL:g}")
    e_eps = None
    if cfg["eps"] != 1e-6:  # the eps must be visible in the output, or the config tests nothing
        e_eps = relerr(ref_forward(orig, dict(cfg, eps=1e-6), x, t, ctx), ref)
        if e_eps < 20 * REF_TOL:
            fail(f"{name}: eps {cfg['eps']:g} vs 1e-6 changes the output by only {e_eps:.1e}")

    _, loss, grads, dx, dctx = grads_of(model, x, t, ctx, dout)
    m64 = copy.deepcopy(model).double()
    _, loss64, g64, dx64, dctx64 = grads_of(m64, x.double(), t, ctx.double(), dout.double())
    worst, worst_name = 0.0, ""
    for k in grads:
        if float(grads[k].abs().max()) == 0.0:
            fail(f"{name}: gradient of {k} is identically zero")
        e = relerr(grads[k], g64[k])
        if e > worst:
            worst, worst_name = e, k
    for k, a, b in (("x", dx, dx64), ("encoder_hidden_states", dctx, dctx64)):
        e = relerr(a, b)
        if e > worst:
            worst, worst_name = e, k
    if worst > GRAD_TOL:
        fail(f"{name}: f32 vs f64 gradient of {worst_name}: {worst:.2e} > {GRAD_TOL:g}")

    save_npy(os.path.join(d, "hidden_states.npy"), x)
    save_npy(os.path.join(d, "timestep.npy"), t)
    save_npy(os.path.join(d, "encoder_hidden_states.npy"), ctx)
    save_npy(os.path.join(d, "out.npy"), out)
    save_npy(os.path.join(d, "out_bf16.npy"), out16)
    save_npy(os.path.join(d, "dout.npy"), dout)
    save_npy(os.path.join(d, "dhidden_states.npy"), dx)
    save_npy(os.path.join(d, "dencoder_hidden_states.npy"), dctx)
    save_file({k: v.contiguous() for k, v in sorted(grads.items())}, os.path.join(d, "grads.safetensors"))
    # the float64 autograd gradients (rounded to f32): the yardstick where f32 itself cancels
    save_file({k: v.float().contiguous() for k, v in sorted(g64.items())}, os.path.join(d, "grads_f64.safetensors"))
    save_npy(os.path.join(d, "dhidden_states_f64.npy"), dx64.float())
    save_npy(os.path.join(d, "dencoder_hidden_states_f64.npy"), dctx64.float())

    e16 = relerr(out16, out)
    nparams = sum(p.numel() for p in model.parameters())
    info = {
        "config": name, "parameters": nparams, "tensors": len(grads),
        "hidden_states": list(x.shape), "encoder_hidden_states": list(ctx.shape),
        "text_valid_rows": spec["text_valid"], "timestep": spec["timesteps"], "out": list(out.shape),
        "loss": float(loss), "loss_f64": float(loss64),
        "max_abs_out": float(out.abs().max()), "std_out": float(out.std()),
        "bf16_vs_f32_max_rel": e16,
        "bf16_vs_f32_rms_rel": float(((out16 - out).pow(2).mean() / out.pow(2).mean()).sqrt()),
        "f32_vs_f64_reimplementation_max_rel": e_ref,
        "f32_vs_f64_grad_worst_rel": worst,
    }
    if e_eps is not None:
        info["eps_vs_1e-6_rel"] = e_eps
    report.append(f"{name}: {nparams} params, x {list(x.shape)}, text {list(ctx.shape)}, t {spec['timesteps']}: "
                  f"|out| max {info['max_abs_out']:.2f} std {info['std_out']:.2f}; loss {float(loss):.6g}; "
                  f"f32 vs f64 reimpl {e_ref:.1e}; bf16 vs f32 max-rel {e16:.2e} (rms-rel "
                  f"{info['bf16_vs_f32_rms_rel']:.2e}); grads f32 vs f64 worst {worst:.1e} ({worst_name})"
                  + (f"; eps {cfg['eps']:g} vs 1e-6 changes out by {e_eps:.1e}" if e_eps is not None else ""))

    if spec["alt_formats"]:
        make_alt_formats(d, td, cfg, model, report)
    if spec["lora"]:
        make_lora(d, td, cfg, spec, x, t, ctx, dout, report)
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "wan_transformer"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    os.makedirs(a.out, exist_ok=True)
    report = []
    for name, spec in CONFIGS.items():
        make_config(a.out, name, spec, report)
    for line in report:
        print(line)
    print(f"make-wan-transformer-fixtures.py: wrote {a.out} (torch {torch.__version__}, diffusers "
          f"{diffusers.__version__}, peft {peft.__version__}, transformers {transformers.__version__}, "
          f"safetensors {safetensors.__version__}, numpy {np.__version__}, Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
