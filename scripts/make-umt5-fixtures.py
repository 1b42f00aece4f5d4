#!/usr/bin/env python3
"""make-umt5-fixtures.py: regenerate tests/fixtures/umt5/.

Builds tiny, randomly initialised transformers `UMT5EncoderModel`s (the real class, the real
layer structure and file layout, only narrower), saves them with `save_pretrained` and records
what the C parity test (tests/unit/test_umt5.c) compares against:

  <model>/config.json, *.safetensors   the save_pretrained directory (loaded by dfm_umt5_load)
  <model>/buckets.npy                   int32 [1201]: the encoder's relative position bucket for
                                        r = key - query = -600 .. 600 (transformers' own function)
  <model>/cases/<name>/ids.npy          int32 [n]: token ids (content tokens + </s> = 1)
  <model>/cases/<name>/out.npy          float32 [n, d_model]: last_hidden_state, fp32 run
  <model>/cases/<name>/out_bf16.npy     float32 [n, d_model]: the same from a bfloat16 run
                                        (from_pretrained(dtype=torch.bfloat16)), some cases only
  gelu_new.npy                          float32 [2, N]: x and transformers' NewGELUActivation(x)

Models:
  tiny  d_model 64, d_kv 16, 4 heads, d_ff 128, 3 layers, vocab 1024 (covers the "rules"
        tokenizer fixture, for the dfm-text-encode pipeline test), 32 buckets / max distance
        128 (Wan's UMT5-XXL values), fp32 weights in one model.safetensors (`shared.weight`).
  odd   d_model 48, d_kv 20, 3 heads (inner 60 != d_model), d_ff 96, 2 layers, vocab 300,
        16 buckets / max distance 64; weights stored bf16, sharded (index json), and the table
        named `encoder.embed_tokens.weight` instead of `shared.weight` (the loader accepts either).

Cases have 1, 7, 40 and 200 tokens (200 > max distance, so the far buckets are used).

Checks made here before anything is written (the script stops if one fails):
  * the valid rows of a run padded to 512 with an attention mask equal the unpadded run to
    PAD_TOL: masked keys get exactly zero weight, so encoding only the valid tokens (what dfm
    does) is the same math; the difference is only reduction order;
  * eager attention and the default (sdpa) agree to PAD_TOL;
  * the saved directory reloads (from_pretrained) to the same outputs, bit for bit.
The fp32 references are the default attention implementation (sdpa in transformers 5).

Python is only needed to regenerate the fixtures, never by `make test`. Needs torch,
transformers, safetensors and numpy. Deterministic: one thread, fixed seeds.

Usage: scripts/make-umt5-fixtures.py [--out DIR]
"""

import argparse
import json
import math
import os
import shutil
import sys

try:
    import numpy as np
    import torch
    import transformers
    from safetensors.torch import load_file, save_file
    from transformers import UMT5Config, UMT5EncoderModel
    from transformers.activations import NewGELUActivation
except ImportError as e:  # pragma: no cover
    sys.exit(f"make-umt5-fixtures.py: {e}; install with: pip install torch transformers safetensors numpy")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PAD_TOL = 1e-5
PAD_LEN = 512
LENGTHS = {"len1": 1, "len7": 7, "len40": 40, "len200": 200}
BF16_CASES = ("len40", "len200")

MODELS = {
    "tiny": dict(config=dict(vocab_size=1024, d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=3,
                             relative_attention_num_buckets=32, relative_attention_max_distance=128),
                 seed=5001, bf16_file=False, shard=None, embed_name="shared.weight"),
    "odd": dict(config=dict(vocab_size=300, d_model=48, d_kv=20, num_heads=3, d_ff=96, num_layers=2,
                            relative_attention_num_buckets=16, relative_attention_max_distance=64),
                seed=5002, bf16_file=True, shard="40KB", embed_name="encoder.embed_tokens.weight"),
}


def randomize(model, seed, round_bf16):
    """Weights that make every part matter: norm weights around 1 (not all ones), relative
    position biases of a trained model's size (~1, not 0.1), queries scaled up so attention is
    not uniform. Outputs stay O(1) (the final norm sees to that)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.copy_(1.0 + 0.25 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("SelfAttention.q.weight"):
                p.mul_(3.0)
            if round_bf16:
                p.copy_(p.to(torch.bfloat16).to(torch.float32))


def run(model, ids, pad_to=None):
    n = len(ids)
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        if pad_to is None:
            return model(input_ids=x).last_hidden_state[0]
        xp = torch.zeros((1, pad_to), dtype=torch.long)
        xp[0, :n] = x[0]
        mask = torch.zeros((1, pad_to), dtype=torch.long)
        mask[0, :n] = 1
        return model(input_ids=xp, attention_mask=mask).last_hidden_state[0, :n]


def maxdiff(a, b):
    return float((a.float() - b.float()).abs().max())


def save_npy(path, a):
    np.save(path, np.ascontiguousarray(a))


def rename_embedding(d, new_name):
    """Rename shared.weight in the saved shard (and the index) to new_name."""
    idx_path = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx_path):
        with open(idx_path) as f:
            idx = json.load(f)
        shard = idx["weight_map"].pop("shared.weight")
        idx["weight_map"][new_name] = shard
        idx["weight_map"] = dict(sorted(idx["weight_map"].items()))
        with open(idx_path, "w") as f:
            json.dump(idx, f, indent=2, sort_keys=True)
            f.write("\n")
    else:
        shard = "model.safetensors"
    p = os.path.join(d, shard)
    t = load_file(p)
    t[new_name] = t.pop("shared.weight")
    save_file(t, p, metadata={"format": "pt"})


def make_model(out, name, spec):
    torch.manual_seed(spec["seed"])
    cfg = UMT5Config(feed_forward_proj="gated-gelu", dropout_rate=0.0, **spec["config"])
    model = UMT5EncoderModel(cfg).eval()
    randomize(model, spec["seed"] + 1, spec["bf16_file"])
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    kw = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    if spec["bf16_file"]:
        model.to(torch.bfloat16).save_pretrained(d, **kw)
        model.to(torch.float32)
    else:
        model.save_pretrained(d, **kw)
    if spec["embed_name"] != "shared.weight":
        rename_embedding(d, spec["embed_name"])

    # the directory must reload to the model we hold
    re32 = UMT5EncoderModel.from_pretrained(d, dtype=torch.float32).eval()
    eager = UMT5EncoderModel.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    bf16 = UMT5EncoderModel.from_pretrained(d, dtype=torch.bfloat16).eval()
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters()), "bf16 load kept some weights fp32"

    att = model.encoder.block[0].layer[0].SelfAttention
    r = torch.arange(-600, 601)
    save_npy(os.path.join(d, "buckets.npy"), att._relative_position_bucket(r).numpy().astype(np.int32))

    rng = np.random.default_rng(spec["seed"] + 2)
    V = cfg.vocab_size
    report = []
    for case, n in LENGTHS.items():
        ids = [int(v) for v in rng.integers(2, V, size=n - 1)] + [1]  # content tokens + </s>
        if n > 3:
            ids[1] = V - 1  # the last row of the table
        ref = run(model, ids)
        d_pad = maxdiff(run(model, ids, PAD_LEN), ref)
        d_eager = maxdiff(run(eager, ids), ref)
        d_reload = maxdiff(run(re32, ids), ref)
        if d_pad > PAD_TOL or d_eager > PAD_TOL or d_reload != 0.0:
            sys.exit(f"make-umt5-fixtures.py: {name}/{case}: padded vs unpadded {d_pad:.2e}, eager vs sdpa "
                     f"{d_eager:.2e} (bound {PAD_TOL:g}), reloaded vs in-memory {d_reload:.2e} (must be 0)")
        c = os.path.join(d, "cases", case)
        os.makedirs(c)
        save_npy(os.path.join(c, "ids.npy"), np.array(ids, dtype=np.int32))
        save_npy(os.path.join(c, "out.npy"), ref.numpy().astype(np.float32))
        line = f"{name}/{case}: n {n}, |out| max {float(ref.abs().max()):.2f}, padded-vs-unpadded {d_pad:.1e}, eager-vs-sdpa {d_eager:.1e}"
        if case in BF16_CASES:
            ob = run(bf16, ids).float()
            save_npy(os.path.join(c, "out_bf16.npy"), ob.numpy())
            line += f", bf16-vs-f32 {maxdiff(ob, ref):.2e}"
        report.append(line)
    return report


def make_gelu(out):
    g = torch.Generator().manual_seed(77)
    x = torch.cat([torch.linspace(-12.0, 12.0, 1201), 3.0 * torch.randn(2000, generator=g),
                   torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 30.0, -30.0, 100.0, -100.0])])
    y = NewGELUActivation()(x)
    save_npy(os.path.join(out, "gelu_new.npy"), torch.stack([x, y]).numpy().astype(np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "umt5"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(a.out, exist_ok=True)
    lines = []
    for name, spec in MODELS.items():
        lines += make_model(a.out, name, spec)
    make_gelu(a.out)
    for l in lines:
        print(l)
    print(f"make-umt5-fixtures.py: wrote {a.out} (torch {torch.__version__}, transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
