#!/usr/bin/env python3
"""dfm-sample benchmark for `make bench`: dfm-sample against diffusers' WanPipeline on the CPU, the same
random models, prompt, sizes, sampler (UniPC, the model's scheduler config), guidance 5 and threads,
every run in its own process.

The models (all random, written here with numpy into one diffusers root under $TMPDIR; deleted
afterwards):
  transformer: the real 1.3B width (dim 1536, 12 heads x 128, ffn 8960, text_dim 4096, freq_dim 256,
    in/out 16; config and tensor layout from tests/fixtures/wan_transformer_layout) with 2 of its 30
    blocks, F32 as the release stores it (~470 MB; scripts/bench_train.py's write_layout_model);
  text_encoder: UMT5 at UMT5-XXL's width (d_model 4096, 64 heads x 64, d_ff 10240, gated-gelu,
    32 relative buckets) with 1 of its 24 layers and the 1,024-entry vocabulary of the test tokenizer
    (tests/fixtures/tokenizer/rules), BF16 (~400 MB), transformers' init scales;
  tokenizer: tests/fixtures/tokenizer/rules; vae: tests/fixtures/wan_vae/z16 (base_dim 4: a tiny
    random VAE); scheduler + model_index.json: tests/fixtures/wan_sample/model (UniPC, shift 3).
diffusers loads them as its Wan model card does: WanPipeline.from_pretrained(torch_dtype=bfloat16)
with the VAE in float32 (dfm-sample's defaults: bf16 transformer and text encoder, f32 VAE), and
here the transformer's calls run under torch.autocast("cpu", bfloat16).

  (1) seconds per denoising step (the CFG pair: dfm one batch of 2, diffusers its two calls cond then
      uncond, + the UniPC step) at 480x832, 17 frames (latents [16, 5, 60, 104], 7,800 tokens), 512
      text rows: dfm-sample --steps 1 and --steps N, the difference of its "denoising X s" over N - 1
      (load, text encoding, the first step and output left out); diffusers: one WanPipeline call of N
      steps (output_type "latent"), the time from the end of step 1 to the end of step N over N - 1
      (callback_on_step_end). Peak RSS of each whole process (the N-step runs).
  (2) the whole run at 256x256, 17 frames, --e2e-steps (10) steps: dfm-sample -o clip.mp4 against a
      process that loads WanPipeline, calls it and writes the frames with diffusers.utils.
      export_to_video (imageio + imageio-ffmpeg): wall seconds and peak RSS of each process.
  (3) --mem-30: the peak memory of dfm-sample with the full 30-block 1.3B transformer (random BF16 in
      the released layout, ~2.8 GB) at 480x832x81 (32,760 tokens), 1 step with CFG, and the real-size
      VAE (random F32 in tests/fixtures/wan_vae_layout's layout, ~0.5 GB). dfm-sample runs its phases
      one after another, each model loaded, used and freed (lib/sample/pipeline.h), so its peak is the
      largest phase's; each phase is measured on its own:
        text: dfm-sample with --checkpoint naming an empty directory: it encodes the prompts, then
          stops with an error when it loads the transformer (the 1-layer UMT5; the real UMT5-XXL's
          phase is its 11.4 GB of BF16 weights plus the activations measured here);
        transformer: dfm-sample --steps 1 -o x.npy (text + transformer, no VAE);
        VAE: dfm-vae-decode (the same dfm_wan_vae_decode dfm-sample calls) on random normalized
          latents [16, (F-1)/4+1, 60, 104] for F in --mem-30-vae-frames (default 81).
      VmRSS is sampled every 0.5 s; --mem-30-timeout S stops each run after S seconds and reports
      the peak reached so far as a lower bound (on 2 cores the full runs take hours: the transformer
      step is ~560 TFLOP at 32,760 tokens, the VAE decode a few hundred).

usage: bench_sample.py [WORKDIR] [--bin DIR] [--python PY] [--threads N] [--steps N] [--rounds N] [--e2e-steps N]
                       [--only step|e2e|mem-30] [--mem-30] [--mem-30-timeout S]
                       [--mem-30-vae-frames F ...] [--no-torch] [--keep] [-v]
       bench_sample.py worker pipe ...   (the torch side; internal)"""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
PROMPT = "A red fox walks through fresh snow in a quiet pine forest at dawn, soft light, slow camera pan."
UMT5 = dict(d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_buckets=32, vocab=1024)
XXL_LAYERS, XXL_VOCAB = 24, 256384


# ---- the torch side (run as `bench_sample.py worker pipe ...` under --python) --------------------

def worker_pipe(a):
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    vae = AutoencoderKLWan.from_pretrained(a.root, subfolder="vae", torch_dtype=torch.float32)
    pipe = WanPipeline.from_pretrained(a.root, vae=vae, torch_dtype=torch.bfloat16)
    t_load = time.perf_counter() - t0
    tr = pipe.transformer
    fwd = tr.forward
    calls = []

    def autocast_forward(*args, **kw):
        if not calls:
            calls.append(time.perf_counter())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fwd(*args, **kw)
    tr.forward = autocast_forward
    ends = []

    def on_step_end(pipe_, i, t, kw):
        ends.append(time.perf_counter())
        return kw
    t1 = time.perf_counter()
    out = pipe(prompt=PROMPT, negative_prompt="", height=a.height, width=a.width, num_frames=a.frames,
               num_inference_steps=a.steps, guidance_scale=5.0, generator=torch.Generator().manual_seed(42),
               output_type="np" if a.video else "latent", callback_on_step_end=on_step_end)
    t2 = time.perf_counter()
    t_export = 0.0
    if a.video:
        from diffusers.utils import export_to_video
        export_to_video(out.frames[0], a.video, fps=16)
        t_export = time.perf_counter() - t2
    print(json.dumps({"load_s": t_load, "text_s": calls[0] - t1, "step_ends": [e - calls[0] for e in ends],
                      "after_s": t2 - ends[-1], "export_s": t_export, "work_s": time.perf_counter() - t0,
                      "torch": torch.__version__.split("+")[0]}))


def worker(argv):
    ap = argparse.ArgumentParser(prog="bench_sample.py worker")
    ap.add_argument("what", choices=["pipe"])
    ap.add_argument("--root", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--frames", type=int, required=True)
    ap.add_argument("--video", help="write the frames here with export_to_video (else: latents only)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    worker_pipe(ap.parse_args(argv))


# ---- the models (numpy) ---------------------------------------------------------------------------

def write_safetensors(path, tensors, make):
    """tensors: [(name, dtype "F32"|"BF16", shape)]; make(name, shape, n) -> f32 array of n values.
    Streamed one tensor at a time; written to path.tmp and renamed."""
    import numpy as np
    header, off = {}, 0
    for name, dt, shape in tensors:
        n = int(np.prod(shape)) * (2 if dt == "BF16" else 4)
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, dt, shape in tensors:
            v = make(name, shape, int(np.prod(shape)))
            if dt == "BF16":
                v = (v.view(np.uint32) >> 16).astype(np.uint16)  # truncation: random values need no rounding
            f.write(v.tobytes())
    os.replace(path + ".tmp", path)
    return off + 8 + len(hb)


def write_umt5(d, layers=1):
    """UMT5EncoderModel at UMT5-XXL's width with `layers` layers, BF16, as transformers saves it
    (tests/fixtures/umt5/tiny's names); values at transformers' UMT5 init scales"""
    import numpy as np
    c = UMT5
    D, inner, ff = c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"]
    t = [("shared.weight", "BF16", (c["vocab"], D))]
    for i in range(layers):
        p = f"encoder.block.{i}.layer."
        t += [(p + "0.SelfAttention." + w + ".weight", "BF16", (inner, D)) for w in "qkv"]
        t += [(p + "0.SelfAttention.o.weight", "BF16", (D, inner)),
              (p + "0.SelfAttention.relative_attention_bias.weight", "BF16", (c["num_buckets"], c["num_heads"])),
              (p + "0.layer_norm.weight", "BF16", (D,)),
              (p + "1.DenseReluDense.wi_0.weight", "BF16", (ff, D)), (p + "1.DenseReluDense.wi_1.weight", "BF16", (ff, D)),
              (p + "1.DenseReluDense.wo.weight", "BF16", (D, ff)), (p + "1.layer_norm.weight", "BF16", (D,))]
    t.append(("encoder.final_layer_norm.weight", "BF16", (D,)))
    rng = np.random.default_rng(3)
    std = {"q": (D * c["d_kv"]) ** -0.5, "k": D ** -0.5, "v": D ** -0.5, "o": inner ** -0.5, "wi_0": D ** -0.5,
           "wi_1": D ** -0.5, "wo": ff ** -0.5, "relative_attention_bias": D ** -0.5, "shared": 1.0}

    def make(name, shape, n):
        if "layer_norm" in name:
            return np.ones(n, np.float32)
        v = rng.standard_normal(n, dtype=np.float32)
        v *= np.float32(std[name.split(".")[-2]])
        return v
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(FIX, "umt5", "tiny", "config.json")) as f:
        cfg = json.load(f)
    cfg.update(d_model=D, d_kv=c["d_kv"], num_heads=c["num_heads"], d_ff=ff, num_layers=layers,
               num_decoder_layers=layers, vocab_size=c["vocab"], dtype="bfloat16")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return write_safetensors(os.path.join(d, "model.safetensors"), t, make)


def write_vae(d):
    """the real-size Wan 2.1 VAE (tests/fixtures/wan_vae_layout), F32, torch's default init scales
    (weights and biases uniform in +-1/sqrt(fan_in)), norm gammas 1"""
    import numpy as np
    with open(os.path.join(FIX, "wan_vae_layout", "layout.json")) as f:
        layout = json.load(f)
    rng = np.random.default_rng(4)

    def make(name, shape, n):
        if name.endswith("gamma"):
            return np.ones(n, np.float32)
        w = layout[name.rsplit(".", 1)[0] + ".weight"]
        fan_in = int(np.prod(w[1:]))
        v = rng.random(n, dtype=np.float32)
        v -= np.float32(0.5)
        v *= np.float32(2 / fan_in ** 0.5)
        return v
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(FIX, "wan_vae_layout", "config.json"), d)
    return write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"),
                             [(k, "F32", v) for k, v in layout.items()], make)


def make_root(root, transformer, vae, text_encoder=None):
    """a diffusers Wan root: model_index.json + scheduler/ copied, the given component directories
    linked (text_encoder: written here when None)"""
    os.makedirs(root)
    shutil.copy(os.path.join(FIX, "wan_sample", "model", "model_index.json"), root)
    shutil.copytree(os.path.join(FIX, "wan_sample", "model", "scheduler"), os.path.join(root, "scheduler"))
    shutil.copytree(os.path.join(FIX, "tokenizer", "rules"), os.path.join(root, "tokenizer"))
    os.symlink(transformer, os.path.join(root, "transformer"))
    os.symlink(vae, os.path.join(root, "vae"))
    if text_encoder:
        os.symlink(text_encoder, os.path.join(root, "text_encoder"))
    else:
        write_umt5(os.path.join(root, "text_encoder"))
    return root


# ---- running and measuring ------------------------------------------------------------------------

def run_measured(cmd, timeout=None, sample=False, verbose=False):
    """run cmd; return rc, stdout, stderr, wall seconds, peak RSS MiB (the child's ru_maxrss; VmHWM
    sampled when stopped by the timeout), whether it timed out, and (sample) the timeline
    [(s, VmRSS MiB, VmHWM MiB)] every 0.5 s"""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err, line = [], [], []

    def pump(src, dst, tag):
        for ln in src:
            dst.append(ln)
            if verbose:
                sys.stderr.write(f"  {tag}| {ln}")
    th = [threading.Thread(target=pump, args=(p.stdout, out, "out")), threading.Thread(target=pump, args=(p.stderr, err, "err"))]
    for t in th:
        t.start()
    timeline, hwm, timed_out = [], 0.0, False
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)  # not p.poll(): it would reap the child and its rusage
        if pid:
            break
        if sample:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    st = dict(ln.split(":", 1) for ln in f if ":" in ln)
                rss, hwm = int(st["VmRSS"].split()[0]) / 1024, int(st["VmHWM"].split()[0]) / 1024
                timeline.append((time.perf_counter() - t0, rss, hwm))
            except (OSError, KeyError, ValueError):
                pass
        if timeout and time.perf_counter() - t0 > timeout:
            timed_out = True
            p.kill()  # the child started here, by its own pid
            _, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.5 if sample else 0.1)
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in th:
        t.join()
    wall = time.perf_counter() - t0
    return {"rc": p.returncode, "out": "".join(out), "err": "".join(err), "wall_s": wall,
            "peak_mib": max(ru.ru_maxrss / 1024, hwm), "timed_out": timed_out, "timeline": timeline}


DENOISE_RE = re.compile(r"denoising ([0-9.]+) s")


def dfm_sample(a, root, out, steps, w, h, f, extra=(), timeout=None, sample=False, expect_fail=False):
    cmd = [os.path.join(a.bin, "dfm-sample"), "--model", root, "-p", PROMPT, "-o", out, "--steps", str(steps),
           "--width", str(w), "--height", str(h), "--frames", str(f), "--guidance", "5", "-j", str(a.threads), "-f",
           *extra]
    r = run_measured(cmd, timeout, sample, a.verbose)
    if not r["timed_out"] and (r["rc"] != 0) != expect_fail:
        sys.exit(f"bench_sample: dfm-sample exited {r['rc']}:\n  {' '.join(cmd)}\n{r['err'][-3000:]}")
    m = DENOISE_RE.search(r["err"])
    r["denoise_s"] = float(m.group(1)) if m else None
    r["cmd"] = cmd
    return r


def torch_pipe(a, root, steps, w, h, f, video=None):
    cmd = [a.python, os.path.abspath(__file__), "worker", "pipe", "--root", root, "--steps", str(steps),
           "--width", str(w), "--height", str(h), "--frames", str(f), "--threads", str(a.threads)]
    if video:
        cmd += ["--video", video]
    r = run_measured(cmd, verbose=a.verbose)
    if r["rc"]:
        print(f"bench_sample: the diffusers run failed:\n{r['err'][-3000:]}", file=sys.stderr)
        return None
    r.update(json.loads(r["out"].strip().splitlines()[-1]))
    return r


def load_avg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def ratio(x, y):
    return f"{x / y:.2f}x" if x and y else "n/a"


# ---- (1) and (2) ----------------------------------------------------------------------------------

def bench_step(a, root, have_torch):
    W, H, F, N = 832, 480, 17, a.steps
    loads = [load_avg()]
    rounds = []  # (dfm s/step, dfm 1st step, dfm peak, diffusers s/step or None, 1st, peak), one per round
    for r in range(a.rounds):  # dfm then diffusers in each round: a drift of the machine's speed hits both
        d1 = dfm_sample(a, root, os.path.join(a.tmp, "s1.npy"), 1, W, H, F)
        dN = dfm_sample(a, root, os.path.join(a.tmp, "sN.npy"), N, W, H, F)
        loads.append(load_avg())
        t = torch_pipe(a, root, N, W, H, F) if have_torch else None
        loads.append(load_avg())
        ds = (dN["denoise_s"] - d1["denoise_s"]) / (N - 1)
        e = t["step_ends"] if t else None
        rounds.append((ds, d1["denoise_s"], dN["peak_mib"], (e[-1] - e[0]) / (N - 1) if t else None,
                       e[0] if t else None, t["peak_mib"] if t else None))
    print(f"(1) one denoising step with CFG (cond + uncond + UniPC), 480x832, 17 frames: latents [16, 5, 60, 104], "
          f"7,800 tokens, 512 text rows; {a.threads} threads")
    print("    transformer: 1.3B width, 2 of 30 blocks; text encoder: UMT5-XXL width, 1 of 24 layers; tiny VAE (unused)")
    print(f"  {'':28s} {'s/step':>8s} {'1st step':>9s} {'peak MiB':>9s}")
    for r, (ds, d1s, dpk, ts, t1s, tpk) in enumerate(rounds):
        tag = f" round {r + 1}" if len(rounds) > 1 else ""
        print(f"  {'dfm-sample (bf16)' + tag:28s} {ds:8.2f} {d1s:9.2f} {dpk:9.0f}")
        if ts is not None:
            print(f"  {'diffusers WanPipeline' + tag:28s} {ts:8.2f} {t1s:9.2f} {tpk:9.0f}")
            print(f"  speed ratio (diffusers s/step / dfm s/step): {ratio(ts, ds)};  memory ratio (dfm / diffusers): "
                  f"{ratio(dpk, tpk)}")
    if len(rounds) > 1 and rounds[0][3] is not None:
        rs = sorted(ts / ds for ds, _, _, ts, _, _ in rounds)
        med = rs[len(rs) // 2] if len(rs) % 2 else (rs[len(rs) // 2 - 1] + rs[len(rs) // 2]) / 2
        print(f"  speed ratio over {len(rs)} rounds: median {med:.2f}x (min {rs[0]:.2f}x, max {rs[-1]:.2f}x)")
    print(f"  s/step: steps 2..{N}: dfm (denoising of --steps {N} - of --steps 1) / {N - 1}; diffusers (end of step {N} "
          f"- end of step 1) / {N - 1}")
    print("  (1st step: dfm's --steps 1 denoising, diffusers' first transformer call to the end of step 1); peak: max RSS")
    print(f"  of the whole process (dfm: its --steps {N} run; diffusers holds all three models at once)")
    print(f"  load average before / after each dfm and diffusers run: {' / '.join(loads)} ({os.cpu_count()} cores)")


def bench_e2e(a, root, have_torch):
    W, H, F, N = 256, 256, 17, a.e2e_steps
    l0 = load_avg()
    d = dfm_sample(a, root, os.path.join(a.tmp, "dfm.mp4"), N, W, H, F)
    l1 = load_avg()
    t = torch_pipe(a, root, N, W, H, F, video=os.path.join(a.tmp, "diffusers.mp4")) if have_torch else None
    l2 = load_avg()
    print(f"(2) the whole run, 256x256, 17 frames (latents [16, 5, 32, 32], 1,280 tokens), {N} steps, guidance 5, "
          f"-> .mp4; {a.threads} threads")
    print("    same models as (1): transformer 2 blocks at the 1.3B width, UMT5 1 layer at the XXL width, tiny VAE")
    print(f"  {'':28s} {'seconds':>8s} {'denoise':>8s} {'peak MiB':>9s}")
    print(f"  {'dfm-sample':28s} {d['wall_s']:8.1f} {d['denoise_s']:8.1f} {d['peak_mib']:9.0f}")
    if t:
        den = t["step_ends"][-1]
        print(f"  {'diffusers WanPipeline':28s} {t['wall_s']:8.1f} {den:8.1f} {t['peak_mib']:9.0f}")
        print(f"  speed ratio (diffusers / dfm, whole process): {ratio(t['wall_s'], d['wall_s'])};  memory ratio "
              f"(dfm / diffusers): {ratio(d['peak_mib'], t['peak_mib'])}")
        print(f"  diffusers inside its process: import {t['wall_s'] - t['work_s']:.1f} s, load {t['load_s']:.1f} s, "
              f"text {t['text_s']:.1f} s, denoise {den:.1f} s, decode {t['after_s']:.1f} s, export_to_video "
              f"{t['export_s']:.1f} s")
    print("  seconds: wall time of the whole process (dfm-sample; python + import torch/diffusers + from_pretrained +")
    print("  the call + export_to_video); denoise: dfm's \"denoising X s\", diffusers' first transformer call to the")
    print(f"  last step's end. load average before / after dfm / after diffusers: {l0} / {l1} / {l2}")


# ---- (3) ------------------------------------------------------------------------------------------

def timeline_note(r):
    """when the peak was reached (the first sample with the final VmHWM), RSS at the end"""
    tl = r["timeline"]
    if not tl:
        return ""
    top = tl[-1][2]
    t_pk = next(t for t, _, h in tl if h >= top)
    return f"VmHWM {top:.0f} MiB reached by {t_pk:.0f} s; VmRSS {tl[-1][1]:.0f} MiB at {tl[-1][0]:.0f} s"


def bench_mem30(a):
    import numpy as np
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_train import write_layout_model
    t0 = time.perf_counter()
    tr = os.path.join(a.tmp, "wan_1.3b_L30_bf16")
    nb = write_layout_model(tr, 30, bf16=True)
    vae = os.path.join(a.tmp, "vae_real")
    nv = write_vae(vae)
    root = make_root(os.path.join(a.tmp, "root30"), tr, vae, text_encoder=a.text_encoder)
    t_write = time.perf_counter() - t0
    empty = os.path.join(a.tmp, "empty")
    os.makedirs(empty, exist_ok=True)
    W, H, F = 832, 480, 81
    lo = a.mem_30_timeout
    print(f"(3) dfm-sample's peak memory with the full 30-block 1.3B transformer (random BF16, released layout, "
          f"{nb / 1e9:.2f} GB),")
    print(f"    the real-size VAE (random F32, {nv / 1e9:.2f} GB), UMT5 at the XXL width with 1 layer; 480x832, 81 "
          f"frames (latents [16, 21, 60, 104],")
    print(f"    32,760 tokens), 1 step with CFG (batch of 2), {a.threads} threads; models written in {t_write:.0f} s"
          + (f"; each run stopped after {lo:.0f} s at most" if lo else ""))
    l0 = load_avg()
    rt = dfm_sample(a, root, os.path.join(a.tmp, "t.npy"), 1, W, H, F, extra=["--checkpoint", empty], sample=True,
                    expect_fail=True)
    if "transformer" not in rt["err"] and "safetensors" not in rt["err"]:
        print(f"  (the text-phase run stopped unexpectedly: {rt['err'].strip().splitlines()[-1:]})")
    rx = dfm_sample(a, root, os.path.join(a.tmp, "x.npy"), 1, W, H, F, timeout=lo, sample=True)
    vr = []
    for fr in a.mem_30_vae_frames:
        T = (fr - 1) // 4 + 1
        shard = os.path.join(a.tmp, f"lat{fr}.tar")
        rng = np.random.default_rng(5)
        lat = rng.standard_normal((16, T, H // 8, W // 8), dtype=np.float32)
        import io
        b = io.BytesIO()
        np.save(b, lat)
        with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tf:
            ti = tarfile.TarInfo("s0.latents.npy")
            ti.size, ti.mtime = len(b.getvalue()), 0
            tf.addfile(ti, io.BytesIO(b.getvalue()))
        cmd = [os.path.join(a.bin, "dfm-vae-decode"), "--model", root, "-j", str(a.threads), "-q",
               "-o", os.path.join(a.tmp, f"frames{fr}.msgpack"), shard]
        r = run_measured(cmd, lo, True, a.verbose)
        if r["rc"] and not r["timed_out"]:
            sys.exit(f"bench_sample: dfm-vae-decode exited {r['rc']}:\n  {' '.join(cmd)}\n{r['err'][-3000:]}")
        os.remove(shard)
        vr.append((fr, r))
    l1 = load_avg()
    ln = "(1-layer UMT5 at the XXL width: %.0f MiB of BF16 weights)" % (
        (UMT5["vocab"] * 4096 + 4096 * 4096 * 4 + 3 * 4096 * 10240) * 2 / 2**20)

    def row(label, r, note=""):
        bound = f">= {r['peak_mib']:.0f}" if r["timed_out"] else f"{r['peak_mib']:.0f}"
        st = f"stopped at {r['wall_s']:.0f} s" if r["timed_out"] else f"{r['wall_s']:.0f} s"
        print(f"  {label:44s} {bound:>10s} {st:>18s}  {note}")
    print(f"  {'phase (run)':44s} {'peak MiB':>10s} {'time':>18s}")
    row("text (--checkpoint EMPTY: stops after it)", rt, ln)
    row("text + transformer (--steps 1 -o x.npy)", rx, timeline_note(rx))
    for fr, r in vr:
        row(f"VAE decode, {fr} frames (dfm-vae-decode)", r, timeline_note(r))
    # the real UMT5-XXL: its BF16 weights in place of the 1-layer model's, the activations as measured
    xxl = (XXL_VOCAB * 4096 + XXL_LAYERS * (4 * 4096 * 4096 + 3 * 4096 * 10240)) * 2 / 2**20
    small = (UMT5["vocab"] * 4096 + 4 * 4096 * 4096 + 3 * 4096 * 10240) * 2 / 2**20
    est = rt["peak_mib"] - small + xxl
    print(f"  text phase with the real UMT5-XXL (24 layers, 256,384 vocab): {xxl:.0f} MiB of BF16 weights + the rest "
          f"of the 1-layer run ({rt['peak_mib'] - small:.0f} MiB:")
    print(f"    runtime, tokenizer, one layer's activations; layers run one after another) = {est:.0f} MiB "
          f"= {est / 1024:.2f} GiB")
    tmax = max([rx["peak_mib"]] + [r["peak_mib"] for _, r in vr])
    print(f"  the phases run one after another, each model freed before the next loads: dfm-sample's peak is the "
          f"largest phase:")
    print(f"    with the 1-layer text encoder {max(tmax, rt['peak_mib']):.0f} MiB; with UMT5-XXL "
          f"{max(tmax, est):.0f} MiB = {max(tmax, est) / 1024:.2f} GiB"
          + (" (lower bounds: runs stopped)" if any(r["timed_out"] for r in [rx] + [r for _, r in vr]) else ""))
    print(f"  load average at the start / end: {l0} / {l1} ({os.cpu_count()} cores)")
    if a.verbose or a.timeline:
        for label, r in [("text", rt), ("transformer", rx)] + [(f"vae{fr}", r) for fr, r in vr]:
            tl = r["timeline"]
            step = max(1, len(tl) // 40)
            print(f"  VmRSS {label} (s:MiB): " + " ".join(f"{t:.0f}:{m:.0f}" for t, m, _ in tl[::step]))
    shutil.rmtree(tr, ignore_errors=True)
    shutil.rmtree(vae, ignore_errors=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        return worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="?", default=os.path.join(ROOT, "bench-out"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "bin"), help="the directory holding dfm-sample")
    ap.add_argument("--python", default=sys.executable, help="the interpreter with torch, diffusers, transformers, "
                    "imageio and imageio-ffmpeg")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=3, help="(1): steps of the timed runs (>= 2)")
    ap.add_argument("--rounds", type=int, default=1, help="(1): rounds of dfm then diffusers (median ratio printed)")
    ap.add_argument("--e2e-steps", type=int, default=10, help="(2): steps of the whole run")
    ap.add_argument("--only", choices=["step", "e2e", "mem-30"])
    ap.add_argument("--mem-30", action="store_true", help="also (3): the 30-block memory runs (writes ~3.3 GB)")
    ap.add_argument("--mem-30-timeout", type=float, default=0, help="(3): stop each run after this many seconds")
    ap.add_argument("--mem-30-vae-frames", type=int, nargs="+", default=[81], help="(3): frames of the VAE runs")
    ap.add_argument("--timeline", action="store_true", help="(3): print the VmRSS timelines")
    ap.add_argument("--no-torch", action="store_true", help="dfm's side only")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the runs' output")
    a = ap.parse_args()
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if a.steps < 2:
        ap.error("--steps must be at least 2")
    for p in ("dfm-sample", "dfm-vae-decode"):
        if not os.access(os.path.join(a.bin, p), os.X_OK):
            sys.exit(f"bench_sample: no {p} in {a.bin} (--bin DIR)")
    have_torch = not a.no_torch and a.only != "mem-30"
    if have_torch:
        try:
            have_torch = subprocess.run([a.python, "-c", "import torch, diffusers, transformers, imageio, imageio_ffmpeg"],
                                        capture_output=True).returncode == 0
        except OSError:
            have_torch = False
        if not have_torch:
            print(f"(the diffusers side is skipped: no torch, diffusers, transformers, imageio and imageio-ffmpeg in "
                  f"{a.python}; BENCH_PYTHON=... to name an interpreter that has them)")
    os.makedirs(a.work, exist_ok=True)
    a.tmp = tempfile.mkdtemp(prefix="dfm-bench-sample-", dir=os.environ.get("TMPDIR"))
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_train import write_layout_model
        a.text_encoder = os.path.join(a.tmp, "umt5_xxl_width_L1")
        write_umt5(a.text_encoder)
        if a.only != "mem-30":
            tr = os.path.join(a.tmp, "wan_1.3b_width_L2")
            write_layout_model(tr, 2, bf16=False)
            root = make_root(os.path.join(a.tmp, "root"), tr, os.path.join(FIX, "wan_vae", "z16"), a.text_encoder)
            if a.only in (None, "step"):
                bench_step(a, root, have_torch)
            if a.only in (None, "e2e"):
                if not a.only:
                    print()
                bench_e2e(a, root, have_torch)
        if a.mem_30 or a.only == "mem-30":
            if a.only != "mem-30":
                print()
            bench_mem30(a)
    finally:
        if a.keep:
            print(f"  (kept {a.tmp})")
        else:
            shutil.rmtree(a.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
