#!/usr/bin/env python3
"""make-sample-fixtures.py: regenerate tests/fixtures/wan_sample/.

Reference runs of diffusers' WanPipeline (text -> video) for the sampler's parity test
(tests/unit/test_sample.c). The pipeline is assembled from existing fixtures, with no new model
weights:
  vae           tests/fixtures/wan_vae/z16                       AutoencoderKLWan, z_dim 16
  text_encoder  tests/fixtures/umt5/tiny                         UMT5EncoderModel, d_model 64
  tokenizer     tests/fixtures/tokenizer/rules                   T5TokenizerFast (SentencePiece Unigram)
  transformer   tests/fixtures/wan_transformer_demo/transformer  WanTransformer3DModel, in/out 16, text_dim 64
  scheduler     UniPCMultistepScheduler as Wan 2.1's Diffusers repos ship it (reference/wan.md 5.2)
Only model_index.json and scheduler/ are written (model/); a consumer links the four model
directories in beside them (as scripts/demo.sh does) to get a complete diffusers root.

Recorded, all float32 on the CPU, one thread, deterministic algorithms, fixed seeds: per case and
prompt the initial noise (passed as `latents=`), the final normalized latents (output_type
"latent"), the decoded frames as uint8 exactly as dfm's VAE stage rounds them, one float video
(output_type "np"), the text encoder's states per prompt, per-step traces of two cases, diffusers'
size rounding over a sweep, and three LoRA files (one adapter in the three naming families).
The README written beside them documents every file and the measured facts (run-to-run
determinism, batch-of-2 vs two calls, LoRA families, frame-rounding sensitivity).

Checks made before anything is written (the script stops if one fails): two runs of a case give
the same bits; the assembled directory (model_index.json + scheduler/ + links) loads with
WanPipeline.from_pretrained and reproduces a case bit for bit; the three LoRA files load with
pipe.load_lora_weights and give the same bits as each other and as the in-memory PEFT adapter,
and change the output; the frames equal round(video * 255) of the float video; the zero-padded
text rows are exact zeros; a guidance <= 1 run ignores the negative prompt (bit for bit); a
prompt needing diffusers' prompt_clean gives the clean prompt's bits.

Python is only needed to regenerate the fixtures, never by `make test`. Needs torch, diffusers,
transformers, peft, safetensors and numpy (PyPI). Reads the fixtures named above, so
scripts/make-fixtures.sh runs it after their generators (LATE).

Usage: scripts/make-sample-fixtures.py [--out DIR]
"""

import argparse
import html
import json
import os
import re
import shutil
import sys
import tempfile

try:
    import numpy as np
    import torch
    import diffusers
    import peft
    import safetensors
    import transformers
    from safetensors.torch import load_file, save_file
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanPipeline,
                           WanTransformer3DModel)
    from diffusers.utils.torch_utils import randn_tensor
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import T5TokenizerFast, UMT5EncoderModel
except ImportError as e:  # pragma: no cover
    sys.exit(f"make-sample-fixtures.py: {e}; install with: "
             "pip install torch diffusers transformers peft safetensors numpy")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
COMPONENTS = {  # component -> fixture directory (relative to tests/fixtures)
    "vae": "wan_vae/z16",
    "text_encoder": "umt5/tiny",
    "tokenizer": "tokenizer/rules",
    "transformer": "wan_transformer_demo/transformer",
}
W, H, FRAMES = 48, 32, 5            # latents [16, 2, 4, 6]
LAT_SHAPE = (1, 16, (FRAMES - 1) // 4 + 1, H // 8, W // 8)
TEXT_LEN = 512
PROMPTS = [
    ("a red fox in the snow", ""),
    ("A small wooden boat drifts across a quiet mountain lake at dawn, mist rising from the water, "
     "soft golden light, slow camera pan.", "blurry, static"),
]
NOISE_SEEDS = [1234, 5678]
# diffusers' prompt_clean: html.unescape twice ("&amp;nbsp;" -> "&nbsp;" -> U+00A0), then every run of
# Unicode whitespace to one space, stripped: this gives PROMPTS[0][0] again.
DIRTY_P0 = "  a red&amp;nbsp;fox \t in\nthe   snow "
CASES = [  # name, sampler, guidance, steps, lora
    ("unipc_cfg", "unipc", 5.0, 6, False),
    ("unipc_nocfg", "unipc", 1.0, 4, False),
    ("euler_cfg", "euler", 5.0, 6, False),
    ("lora", "unipc", 5.0, 6, True),
]
FLOW_SHIFT = 3.0
LORA_R, LORA_ALPHA = 4, 8           # scale 2: folding it into B (or A) is exact
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]  # dfm-train's default
ORIG = {"attn1": "self_attn", "attn2": "cross_attn", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o",
        "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}


def fail(msg):
    sys.exit(f"make-sample-fixtures.py: {msg}")


def save_npy(path, a):
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    np.save(path, np.ascontiguousarray(a))


def relerr(a, b):
    """max |a - b| / max |b| (b the reference)."""
    a, b = a.double(), b.double()
    den = float(b.abs().max())
    return float((a - b).abs().max()) / (den if den > 0 else 1.0)


def scheduler(kind):
    if kind == "unipc":  # what diffusers' convert_wan_to_diffusers.py writes for T2V (wan.md 5.2)
        return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                       num_train_timesteps=1000, flow_shift=FLOW_SHIFT)
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=FLOW_SHIFT)  # training.md 5


def load_pipe(kind="unipc"):
    p = {k: os.path.join(FIX, v) for k, v in COMPONENTS.items()}
    return WanPipeline(tokenizer=T5TokenizerFast.from_pretrained(p["tokenizer"]),
                       text_encoder=UMT5EncoderModel.from_pretrained(p["text_encoder"]).eval(),
                       vae=AutoencoderKLWan.from_pretrained(p["vae"]).eval(),
                       transformer=WanTransformer3DModel.from_pretrained(p["transformer"]).eval(),
                       scheduler=scheduler(kind))


def noise(i):
    g = torch.Generator("cpu").manual_seed(NOISE_SEEDS[i])
    return randn_tensor(LAT_SHAPE, generator=g, device=torch.device("cpu"), dtype=torch.float32)


def run(pipe, prompt, negative, guidance, steps, lat, output_type="latent"):
    with torch.no_grad():
        out = pipe(prompt, negative_prompt=negative, height=H, width=W, num_frames=FRAMES, guidance_scale=guidance,
                   num_inference_steps=steps, latents=lat.clone(), output_type=output_type, max_sequence_length=TEXT_LEN)
    return out.frames if output_type == "latent" else torch.from_numpy(np.asarray(out.frames))


def decode_raw(pipe, lat):
    """The VAE's raw output [1, 3, F, H, W] for normalized latents, as WanPipeline.__call__ decodes them."""
    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1)
    with torch.no_grad():
        return vae.decode(lat / inv_std + mean, return_dict=False)[0]


def to_frames(raw):
    """dfm's rounding (lib/models/wan/vae_stage.c dfm_video_to_frames): lrintf(clamp(x/2+0.5, 0, 1) * 255), f32."""
    v = (raw[0].float() / 2.0 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).numpy()  # [F, H, W, 3]
    return np.rint(v * np.float32(255.0)).astype(np.uint8)


def trace(pipe, prompt, negative, guidance, steps, lat):
    """Run once with the scheduler's step wrapped: the sample before each step, the CFG-combined model
    output, the timesteps and sigmas."""
    xs, vs = [], []
    orig = pipe.scheduler.step

    def step(model_output, t, sample, *a, **k):
        xs.append(sample.detach().clone())
        vs.append(model_output.detach().clone())
        return orig(model_output, t, sample, *a, **k)

    pipe.scheduler.step = step
    try:
        out = run(pipe, prompt, negative, guidance, steps, lat)
    finally:
        del pipe.scheduler.step
    xs.append(out)
    return (torch.cat(xs)[:, :], torch.cat(vs), pipe.scheduler.timesteps.clone(), pipe.scheduler.sigmas.clone())


# ------------------------------------------------------------------------------------------------
# text

def text_states(pipe, prompt):
    """ids (the tokenizer's, incl. </s>) and the L valid rows of the padded states [1, 512, 64] that
    encode_prompt returns; checks that the rest are exact zeros."""
    with torch.no_grad():
        pe, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=TEXT_LEN)
    clean = re.sub(r"\s+", " ", html.unescape(html.unescape(prompt)).strip()).strip()
    tk = pipe.tokenizer(clean, padding="max_length", max_length=TEXT_LEN, truncation=True, add_special_tokens=True,
                        return_attention_mask=True)
    n = int(sum(tk.attention_mask))
    ids = np.array(tk.input_ids[:n], dtype=np.int32)
    if pe.shape != (1, TEXT_LEN, 64) or pe.dtype != torch.float32:
        fail(f"prompt states {tuple(pe.shape)} {pe.dtype}")
    if n < TEXT_LEN and float(pe[0, n:].abs().max()) != 0.0:
        fail("padded text rows are not exact zeros")
    if float(pe[0, n - 1].abs().max()) == 0.0:
        fail("last valid text row is zero")
    return ids, pe[0, :n].clone()


# ------------------------------------------------------------------------------------------------
# LoRA in three naming families

def canonical_metadata_order(path):
    """safetensors writes __metadata__ in hash order; rewrite the header with its keys sorted (same
    tensors, offsets and data; header re-padded with spaces to a multiple of 8)."""
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


def original_module(mod):
    """blocks.0.attn1.to_q -> blocks.0.self_attn.q; blocks.1.ffn.net.0.proj -> blocks.1.ffn.0"""
    m = re.fullmatch(r"blocks\.(\d+)\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)", mod)
    if m:
        return f"blocks.{m[1]}.{ORIG[m[2]]}.{ORIG[m[3]]}"
    m = re.fullmatch(r"blocks\.(\d+)\.(ffn\.net\.0\.proj|ffn\.net\.2)", mod)
    if m:
        return f"blocks.{m[1]}.{ORIG[m[2]]}"
    fail(f"no original name for {mod}")


def make_lora(out_dir, report):
    """A random rank-4 adapter (alpha 8) on the default targets, written as diffusers/PEFT,
    diffusion-pipe/ComfyUI and musubi-tuner files. Returns (adapted transformer, {family: path})."""
    torch.manual_seed(20)  # PEFT's kaiming-uniform init of A draws from the global RNG
    m = WanTransformer3DModel.from_pretrained(os.path.join(FIX, COMPONENTS["transformer"])).eval()
    m.add_adapter(LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, init_lora_weights=True, lora_dropout=0.0,
                             target_modules=LORA_TARGETS))
    g = torch.Generator().manual_seed(21)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    params = get_peft_model_state_dict(m)  # blocks.0.attn1.to_q.lora_A.weight ...
    nmod = m.config.num_layers * 10
    if len(params) != 2 * nmod:
        fail(f"LoRA: {len(params)} tensors, expected {2 * nmod}")
    scale = LORA_ALPHA / LORA_R
    paths = {}

    # diffusers / PEFT: transformer.* keys, B unfolded, alpha in the lora_adapter_metadata header
    d = os.path.join(out_dir, "diffusers")
    meta = m.peft_config["default"].to_dict()
    meta["target_modules"] = sorted(meta["target_modules"])
    WanPipeline.save_lora_weights(d, transformer_lora_layers=params, transformer_lora_adapter_metadata=meta)
    paths["diffusers"] = os.path.join(d, "pytorch_lora_weights.safetensors")
    canonical_metadata_order(paths["diffusers"])

    # diffusion-pipe / ComfyUI: diffusion_model.<original module>.lora_A/B.weight, alpha/r folded into B
    d = os.path.join(out_dir, "diffusion_pipe")
    os.makedirs(d)
    dm = {}
    for k, v in params.items():
        mod, ab = re.fullmatch(r"(.*)\.(lora_A|lora_B)\.weight", k).groups()
        dm[f"diffusion_model.{original_module(mod)}.{ab}.weight"] = (v * scale if ab == "lora_B" else v).contiguous()
    paths["diffusion_pipe"] = os.path.join(d, "adapter_model.safetensors")
    save_file(dict(sorted(dm.items())), paths["diffusion_pipe"], metadata={"format": "pt"})
    targets = sorted({original_module(re.fullmatch(r"(.*)\.lora_[AB]\.weight", k)[1]) for k in params})
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"bias": "none", "lora_alpha": LORA_R, "lora_dropout": 0.0, "peft_type": "LORA", "r": LORA_R,
                   "target_modules": targets}, f, indent=2, sort_keys=True)
        f.write("\n")

    # musubi-tuner: lora_unet_<module with underscores>.lora_down/.lora_up.weight and a 0-dim f32 .alpha
    d = os.path.join(out_dir, "musubi")
    os.makedirs(d)
    mu = {}
    for k, v in params.items():
        mod, ab = re.fullmatch(r"(.*)\.(lora_A|lora_B)\.weight", k).groups()
        base = "lora_unet_" + original_module(mod).replace(".", "_")
        mu[f"{base}.{'lora_down' if ab == 'lora_A' else 'lora_up'}.weight"] = v.contiguous()
        mu[f"{base}.alpha"] = torch.tensor(float(LORA_ALPHA), dtype=torch.float32)
    paths["musubi"] = os.path.join(d, "wan_lora_musubi.safetensors")
    save_file(dict(sorted(mu.items())), paths["musubi"])
    report.append(f"- LoRA: rank {LORA_R}, alpha {LORA_ALPHA} (scale {scale:g}), {nmod} modules "
                  f"({', '.join(LORA_TARGETS)} of both blocks), A from PEFT's init (torch seed 20), "
                  f"B = 0.2 * randn (generator seed 21).")
    return m, paths


# ------------------------------------------------------------------------------------------------
# size rounding

class _Stop(Exception):
    pass


def round_sweep(pipe, pe, ne):
    """diffusers' size handling for a sweep: whether __call__ accepts (w, h, f) and the sizes it goes on
    with (prepare_latents' arguments; taken with check_inputs bypassed, so also for sizes it refuses)."""
    got = {}

    def prep(self_, batch, ch, height, width, num_frames, *a, **k):
        got["hwf"] = (height, width, num_frames)
        raise _Stop()

    rows = []
    ws = [16, 17, 31, 32, 33, 48, 100, 481, 832, 840]
    hs = [16, 20, 47, 48, 480, 495]
    fs = list(range(1, 15)) + [16, 17, 18, 19, 20, 21, 33, 80, 81, 82, 83, 84, 85]
    cls = type(pipe)
    orig_prep, orig_check = cls.prepare_latents, cls.check_inputs
    cls.prepare_latents = prep
    try:
        for w in ws:
            for h in hs:
                for f in fs:
                    res = []
                    for bypass in (False, True):
                        if bypass:
                            cls.check_inputs = lambda *a, **k: None
                        got.clear()
                        try:
                            pipe(prompt_embeds=pe, negative_prompt_embeds=ne, height=h, width=w, num_frames=f,
                                 num_inference_steps=1, guidance_scale=5.0, output_type="latent")
                        except _Stop:
                            pass
                        except ValueError:
                            pass
                        finally:
                            cls.check_inputs = orig_check
                        res.append(got.get("hwf"))
                    acc = res[0] is not None
                    hh, ww, ff = res[1]
                    if acc and res[0] != res[1]:
                        fail("check_inputs changed the sizes")
                    rows.append([w, h, f, int(acc), ww, hh, ff])
    finally:
        cls.prepare_latents, cls.check_inputs = orig_prep, orig_check
    return np.array(rows, dtype=np.int32)


# ------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(FIX, "wan_sample"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    tmp = tempfile.mkdtemp(prefix="wan_sample.")
    out = os.path.join(tmp, "out")
    os.makedirs(out)
    report = []
    pipe = load_pipe("unipc")
    euler = load_pipe("euler")
    for pp in (pipe, euler):
        pp.set_progress_bar_config(disable=True)

    # model/: model_index.json (the Wan2.1-T2V-1.3B-Diffusers one, wan.md 7, with the fields newer
    # diffusers add) and scheduler/scheduler_config.json as save_pretrained writes them
    md = os.path.join(out, "model")
    os.makedirs(os.path.join(md, "scheduler"))
    pipe.scheduler.save_pretrained(os.path.join(md, "scheduler"))
    index = {"_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__, "boundary_ratio": None,
             "expand_timesteps": False, "scheduler": ["diffusers", "UniPCMultistepScheduler"],
             "text_encoder": ["transformers", "UMT5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
             "transformer": ["diffusers", "WanTransformer3DModel"], "transformer_2": [None, None],
             "vae": ["diffusers", "AutoencoderKLWan"]}
    with open(os.path.join(md, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    os.makedirs(os.path.join(out, "euler"))
    euler.scheduler.save_pretrained(os.path.join(out, "euler"))

    # text
    td = os.path.join(out, "text")
    os.makedirs(td)
    texts = {}
    for i, (p, n) in enumerate(PROMPTS):
        for tag, s in ((f"p{i}", p), (f"neg{i}", n)):
            ids, st = text_states(pipe, s)
            texts[tag] = (ids, st)
            save_npy(os.path.join(td, f"{tag}_ids.npy"), ids)
            save_npy(os.path.join(td, f"{tag}_states.npy"), st)
    report.append("- Text rows kept: " + ", ".join(f"{k} {len(v[0])}" for k, v in texts.items()) +
                  " (incl. </s>); rows past them are exact zeros in encode_prompt's [1, 512, 64] (checked).")

    # noise
    noises = [noise(i) for i in range(len(PROMPTS))]
    for i, z in enumerate(noises):
        save_npy(os.path.join(out, f"noise_p{i}.npy"), z[0])

    # determinism: two runs
    a1 = run(pipe, *PROMPTS[0], 5.0, 6, noises[0])
    a2 = run(pipe, *PROMPTS[0], 5.0, 6, noises[0])
    if not torch.equal(a1, a2):
        fail(f"two runs differ ({relerr(a1, a2):.2e})")
    report.append("- Two runs of unipc_cfg in one process: bit-identical latents.")

    # the assembled directory loads with from_pretrained and gives the same bits
    asm = os.path.join(tmp, "assembled")
    os.makedirs(asm)
    shutil.copy(os.path.join(md, "model_index.json"), asm)
    shutil.copytree(os.path.join(md, "scheduler"), os.path.join(asm, "scheduler"))
    for k, v in COMPONENTS.items():
        os.symlink(os.path.join(FIX, v), os.path.join(asm, k))
    p2 = WanPipeline.from_pretrained(asm, dtype=torch.float32)
    p2.set_progress_bar_config(disable=True)
    public = lambda c: {k: v for k, v in dict(c).items() if not k.startswith("_")}
    if type(p2.scheduler) is not UniPCMultistepScheduler or public(p2.scheduler.config) != public(pipe.scheduler.config):
        fail("the assembled directory's scheduler differs")
    if not torch.equal(run(p2, *PROMPTS[0], 5.0, 6, noises[0]), a1):
        fail("the assembled directory gives different latents")
    del p2
    report.append("- model/ + links to the four fixture directories loads with WanPipeline.from_pretrained and "
                  "reproduces unipc_cfg bit for bit.")

    # guidance <= 1 never runs the unconditional pass: the negative prompt has no effect
    b1 = run(pipe, PROMPTS[0][0], "", 1.0, 4, noises[0])
    b2 = run(pipe, PROMPTS[0][0], "snow, ugly", 0.5, 4, noises[0])
    if not torch.equal(b1, b2):
        fail("guidance 1 / 0.5 runs differ")
    report.append("- Guidance 1.0 with negative \"\" and guidance 0.5 with negative \"snow, ugly\": bit-identical "
                  "(no CFG when guidance <= 1; the negative is never encoded).")

    # prompt_clean
    if not torch.equal(run(pipe, DIRTY_P0, "", 5.0, 6, noises[0]), a1):
        fail("the dirty prompt does not reproduce p0")
    raw_ids = pipe.tokenizer(DIRTY_P0, add_special_tokens=True).input_ids
    report.append(f"- Prompt {json.dumps(DIRTY_P0)} gives p0's bits (prompt_clean: html.unescape twice, "
                  f"whitespace runs incl. U+00A0 -> one space, strip; ftfy "
                  f"{'installed' if diffusers.utils.is_ftfy_available() else 'not installed, so not applied'}). "
                  f"Tokenized without cleaning it is {len(raw_ids)} ids, not {len(texts['p0'][0])}.")

    # CFG batching: one batch of 2 (as dfm runs it) vs diffusers' two calls, on every step of unipc_cfg
    xs, vs, ts, sg = trace(pipe, *PROMPTS[0], 5.0, 6, noises[0])
    with torch.no_grad():
        pe, ne = pipe.encode_prompt(PROMPTS[0][0], PROMPTS[0][1], True, max_sequence_length=TEXT_LEN)
        worst, bitwise = 0.0, True
        for i, t in enumerate(ts):
            x = xs[i:i + 1]
            c = pipe.transformer(x, t.expand(1), pe, return_dict=False)[0]
            u = pipe.transformer(x, t.expand(1), ne, return_dict=False)[0]
            b = pipe.transformer(torch.cat([x, x]), t.expand(2), torch.cat([pe, ne]), return_dict=False)[0]
            worst = max(worst, relerr(b[0:1], c), relerr(b[1:2], u))
            bitwise = bitwise and torch.equal(b[0:1], c) and torch.equal(b[1:2], u)
    report.append(f"- CFG batching: the transformer on a batch of 2 (cond, uncond) vs two batch-1 calls, every step "
                  f"of unipc_cfg: {'bit-identical' if bitwise else f'max error {worst:.2e} of max |out|'}.")

    # cases
    cd = os.path.join(out, "cases")
    lora_model, lora_paths = make_lora(os.path.join(out, "lora"), report)
    results = {}
    for name, kind, g, steps, lora in CASES:
        d = os.path.join(cd, name)
        os.makedirs(d)
        for i, (p, n) in enumerate(PROMPTS):
            if not lora:
                lat = run(euler if kind == "euler" else pipe, p, n, g, steps, noises[i])
            else:
                outs = {}
                for fam, path in lora_paths.items():
                    pl = load_pipe("unipc")
                    pl.set_progress_bar_config(disable=True)
                    pl.load_lora_weights(path)
                    outs[fam] = run(pl, p, n, g, steps, noises[i])
                pm = load_pipe("unipc")
                pm.set_progress_bar_config(disable=True)
                pm.transformer = lora_model
                ref = run(pm, p, n, g, steps, noises[i])
                for fam, o in outs.items():
                    if not torch.equal(o, ref):
                        fail(f"LoRA family {fam}: {relerr(o, ref):.2e} from the in-memory adapter")
                lat = ref
                base = results[("unipc_cfg", i)]
                report.append(f"- LoRA, p{i}: the three files (pipe.load_lora_weights) and the in-memory PEFT adapter "
                              f"give the same bits; the adapter moves the latents by {relerr(lat, base):.3f} of max |x| "
                              f"(the velocity part, latents - noise, by "
                              f"{relerr(lat - noises[i], base - noises[i]):.2f} of its max).")
            results[(name, i)] = lat
            save_npy(os.path.join(d, f"p{i}_latents.npy"), lat[0])
            fr = to_frames(decode_raw(pipe, lat))
            np.save(os.path.join(d, f"p{i}_frames.npy"), fr)
            if name == "unipc_cfg" and i == 0:
                video = run(pipe, p, n, g, steps, noises[i], output_type="np")[0]  # [F, H, W, 3] f32 in [0, 1]
                if video.shape != (FRAMES, H, W, 3) or video.dtype != torch.float32:
                    fail(f"np video {tuple(video.shape)} {video.dtype}")
                if not np.array_equal(np.rint(video.numpy() * np.float32(255.0)).astype(np.uint8), fr):
                    fail("frames != rint(video * 255)")
                save_npy(os.path.join(d, "p0_video.npy"), video)
    report.append("- Frames: frames.npy == rint(video * 255) (f32, half to even) of WanPipeline's output_type=\"np\" "
                  "video, checked on unipc_cfg p0 (video.npy).")
    lat_vs_noise = ", ".join(f"{n} p{i} {float((results[(n, i)] - noises[i]).abs().max()):.3f}"
                             for n, *_ in CASES for i in range(len(PROMPTS)))
    report.append(f"- max |latents - noise| (the sampler's part; the demo model's proj_out is scaled by 0.1): "
                  f"{lat_vs_noise}; max |noise| {max(float(z.abs().max()) for z in noises):.2f}.")

    # traces: unipc_cfg and euler_cfg, p0
    for name, pp in (("unipc_cfg", pipe), ("euler_cfg", euler)):
        xs, vs, ts, sg = trace(pp, *PROMPTS[0], 5.0, 6, noises[0])
        if not torch.equal(xs[-1:], results[(name, 0)]):
            fail(f"trace {name} differs from its case")
        d = os.path.join(out, "trace", name)
        os.makedirs(d)
        save_npy(os.path.join(d, "x.npy"), xs)
        save_npy(os.path.join(d, "v.npy"), vs)
        save_npy(os.path.join(d, "timesteps.npy"), ts.to(torch.float32))
        save_npy(os.path.join(d, "sigmas.npy"), sg.to(torch.float32))
        report.append(f"- {name} timesteps: {[round(float(t), 4) for t in ts]}")

    # rounding sensitivity of the frames: decode latents perturbed by +-1e-5 of max |x|
    g = torch.Generator().manual_seed(99)
    lat = results[("unipc_cfg", 0)]
    fr = to_frames(decode_raw(pipe, lat)).astype(np.int32)
    for eps in (1e-6, 1e-5, 1e-4):
        pert = lat + eps * float(lat.abs().max()) * (2 * torch.rand(lat.shape, generator=g) - 1)
        d = np.abs(to_frames(decode_raw(pipe, pert)).astype(np.int32) - fr)
        report.append(f"- Frame sensitivity: latents moved by up to {eps:g} of max |x| change "
                      f"{(d > 0).mean() * 100:.3f}% of the uint8 values by 1, {(d > 1).sum()} by more.")

    # size rounding
    with torch.no_grad():
        pe, ne = pipe.encode_prompt(PROMPTS[0][0], "", True, max_sequence_length=TEXT_LEN)
    rs = round_sweep(pipe, pe, ne)
    np.save(os.path.join(out, "round_size.npy"), rs)
    report.append(f"- Size sweep: {len(rs)} (w, h, f); diffusers accepts {int(rs[:, 3].sum())} (w and h multiples of "
                  f"16: check_inputs raises ValueError before the rounding code runs, so its w/h rounding never "
                  f"changes anything); frames -> f // 4 * 4 + 1 when f % 4 != 1.")

    write_readme(out, report)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    shutil.copytree(out, args.out)
    shutil.rmtree(tmp)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.out) for f in fs)
    print(f"wrote {args.out} ({total / 1024:.0f} KB)")
    for line in report:
        print(line)


def write_readme(out, report):
    cases = "\n".join(f"| `{n}` | {'UniPC' if k == 'unipc' else 'Euler'} | {g:g} | {s} | "
                      f"{'the adapter in lora/ (each family)' if lo else '-'} |" for n, k, g, s, lo in CASES)
    prompts = "\n".join(f"- p{i}: prompt {json.dumps(p)}, negative {json.dumps(n)}, noise seed {NOISE_SEEDS[i]}"
                        for i, (p, n) in enumerate(PROMPTS))
    text = f"""# tests/fixtures/wan_sample: WanPipeline reference runs for dfm's sampler

Generated by `scripts/make-sample-fixtures.py` (see its docstring); do not edit by hand. diffusers
{diffusers.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, peft
{peft.__version__}, safetensors {safetensors.__version__}, numpy {np.__version__}; float32 on the
CPU, one thread, deterministic algorithms.

## The pipeline

`model/` holds only `model_index.json` (Wan2.1-T2V-1.3B-Diffusers' own, with the fields newer
diffusers add) and `scheduler/scheduler_config.json` (UniPCMultistepScheduler, flow_prediction,
use_flow_sigmas, flow_shift {FLOW_SHIFT:g}, solver_order 2, bh2: what diffusers' conversion script
writes for Wan 2.1 T2V). To get a complete diffusers root, copy or link `model/` and add links to
the model directories of other fixtures:

    vae          -> tests/fixtures/{COMPONENTS['vae']}
    text_encoder -> tests/fixtures/{COMPONENTS['text_encoder']}
    tokenizer    -> tests/fixtures/{COMPONENTS['tokenizer']}
    transformer  -> tests/fixtures/{COMPONENTS['transformer']}

`euler/scheduler_config.json` is FlowMatchEulerDiscreteScheduler(shift={FLOW_SHIFT:g}), set on the
pipeline for the Euler case (training.md 5: its `shift`, not `flow_shift`).

## Requests

Size {W}x{H}, {FRAMES} frames -> latents [16, {LAT_SHAPE[2]}, {LAT_SHAPE[3]}, {LAT_SHAPE[4]}];
max_sequence_length {TEXT_LEN}; the noise passed as `latents=`.

{prompts}

| case | sampler | guidance | steps | LoRA |
|---|---|---|---|---|
{cases}

## Files

- `noise_p{{0,1}}.npy`: f32 [16, {LAT_SHAPE[2]}, {LAT_SHAPE[3]}, {LAT_SHAPE[4]}], the initial latents of
  every case for that prompt (diffusers' randn_tensor with torch.Generator().manual_seed(seed); dfm's
  request.noise; diffusers took it as [1, 16, ...]).
- `cases/<case>/p{{0,1}}_latents.npy`: f32 [16, {LAT_SHAPE[2]}, {LAT_SHAPE[3]}, {LAT_SHAPE[4]}], the final normalized
  latents (output_type "latent").
- `cases/<case>/p{{0,1}}_frames.npy`: uint8 [{FRAMES}, {H}, {W}, 3], those latents de-normalized as
  WanPipeline does (z / (1 / std) + mean), decoded by the VAE, and rounded as dfm's VAE stage rounds
  them: rint(clamp(x / 2 + 0.5, 0, 1) * 255) in f32 (half to even).
- `cases/unipc_cfg/p0_video.npy`: f32 [{FRAMES}, {H}, {W}, 3], WanPipeline's output_type "np" video for that
  request (clamp(x / 2 + 0.5, 0, 1)); `p0_frames.npy` == rint(video * 255) exactly.
- `cases/lora/`: the same run with the adapter; all three files under `lora/` give these bits.
- `lora/diffusers/pytorch_lora_weights.safetensors`: diffusers/PEFT naming (`transformer.blocks.N.attn1.to_q.lora_A.weight`),
  B unfolded, alpha {LORA_ALPHA} in the `lora_adapter_metadata` header (WanPipeline.save_lora_weights).
- `lora/diffusion_pipe/adapter_model.safetensors` (+ `adapter_config.json`, lora_alpha = r): diffusion-pipe/ComfyUI
  naming (`diffusion_model.blocks.N.self_attn.q.lora_A.weight`, original Wan module names), alpha/r folded into B,
  header {{"format": "pt"}}.
- `lora/musubi/wan_lora_musubi.safetensors`: musubi-tuner naming (`lora_unet_blocks_N_self_attn_q.lora_down.weight`,
  `.lora_up.weight`, a 0-dim f32 `.alpha` = {LORA_ALPHA}).
- `text/<tag>_ids.npy` (int32 [L], incl. </s>) and `text/<tag>_states.npy` (f32 [L, 64]) for tags p0, neg0, p1,
  neg1: the tokenizer's ids of the cleaned text and the L valid rows of encode_prompt's [1, 512, 64] states;
  rows L..511 are exact zeros there (not stored).
- `trace/<unipc_cfg|euler_cfg>/`: p0 of that case step by step: `x.npy` f32 [steps + 1, 16, ...] (the sample
  before each scheduler step, then the final latents), `v.npy` f32 [steps, 16, ...] (the CFG-combined model
  output each step got), `timesteps.npy` f32 [steps] (what the transformer got; integers for UniPC),
  `sigmas.npy` f32 [steps + 1].
- `round_size.npy`: int32 [N, 7] rows (w, h, f, accepted, w', h', f'): whether WanPipeline.__call__ accepts the
  size, and the sizes it goes on with when its check_inputs is bypassed (its own rounding code: w, h floored to
  multiples of 16 = vae scale 8 x patch 2; f -> f // 4 * 4 + 1 when f % 4 != 1, at least 1).

## Measured here

{chr(10).join(report)}

## What a C test should expect

- Latents: diffusers is deterministic run to run, so the only differences are dfm's own float rounding
  (the order of sums in matmuls and attention, the CFG batch of 2); on this tiny model they should stay
  around 1e-6..1e-5 of max |x|.
- Frames: an error of 1e-5 of max |x| in the latents moves a small fraction of the uint8 values by 1 (see
  the sensitivity lines above) and none by more; allow |diff| <= 1 with a bounded fraction of 1s.
"""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
