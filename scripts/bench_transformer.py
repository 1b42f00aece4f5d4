#!/usr/bin/env python3
"""Wan 2.1 transformer benchmark for `make bench`: dfm's transformer (scripts/bench_transformer.c built
against libdfm) against diffusers' WanTransformer3DModel on the CPU, the same random weights, inputs
and threads, every configuration in its own process. The real 1.3B width (dim 1536, 12 heads x 128,
ffn 8960, text_dim 4096, freq_dim 256, in/out 16; config and tensor layout from
tests/fixtures/wan_transformer_layout) with 2 of its 30 blocks, a 17-frame 256x384 latent
[1, 16, 5, 32, 48] (1,920 tokens) and 512 text rows:
  (a) LoRA rank 32 (alpha 32) on the default targets, base frozen in bf16, bf16 compute: forward +
      backward. diffusers: PEFT adapters in f32 on the bf16 base under torch.autocast("cpu",
      bfloat16), as diffusion-pipe and musubi-tuner train;
  (b) full fine-tuning, every parameter f32 and trainable: forward + backward;
  (c) forward only in bf16 (a sampling step; diffusers as its pipeline calls it, bf16 inputs).
Seconds per step (median of --steps after a warm-up; the lowest over --rounds interleaved processes),
peak RSS (VmHWM of the process) and the difference of the two outputs. Then the attention op alone
(dfm_op_sdpa forward + backward against torch's F.scaled_dot_product_attention, f32 and bf16, 12 heads x 128;
7,800 tokens (480x832x17) by default, 32,760 (480x832x81) with --attn-tokens: 18x the work, minutes
per core), the machine's GEMM rates measured in the same run, and dfm's LoRA training memory with 1
and 2 blocks, with and without activation checkpointing, extrapolated to the full 30-block model at
256x256x17 (1,280 tokens) and 480x832x81 (32,760 tokens).

The model directories (~470 MB and ~290 MB of f32 safetensors) are written under $TMPDIR and
deleted afterwards. The torch side runs under --python (default: this interpreter); without
torch, diffusers and peft there it is skipped and only dfm's figures are printed.

usage: bench_transformer.py [WORKDIR] [--threads N] [--steps N] [--rounds N] [--python PY] [--build DIR]
                            [--no-make] [--attn-tokens S] [--no-attn] [--no-memory]
                            [--mem-tokens N1 N2] [--mem-check-long] [--keep]
       bench_transformer.py worker run|attn|gemm ...   (the torch side; internal)"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LAYOUT = os.path.join(ROOT, "tests", "fixtures", "wan_transformer_layout")
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]
D, HEADS, HD, FFN, TEXT_DIM, FULL_LAYERS = 1536, 12, 128, 8960, 4096, 30


# ---- the torch side (run as `bench_transformer.py worker ...` under --python) ---------------------

def status_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return -1.0


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker_run(a):
    import numpy as np
    import torch
    from diffusers import WanTransformer3DModel
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    if a.mode == "full":
        m = WanTransformer3DModel.from_pretrained(a.model, torch_dtype=torch.float32)
        m.requires_grad_(True)
    else:
        m = WanTransformer3DModel.from_pretrained(a.model, torch_dtype=torch.bfloat16)
        m.requires_grad_(False)
    trained = 0
    if a.mode == "lora":
        from peft import LoraConfig
        m.add_adapter(LoraConfig(r=a.rank, lora_alpha=a.rank, init_lora_weights=True, target_modules=TARGETS))
        for n, p in m.named_parameters():
            if "lora_" in n:  # adapters in f32 on the bf16 base, as the trainers keep them
                p.data = p.data.float()
                p.requires_grad_(True)
    m.train(a.mode != "fwd")
    trained = sum(p.numel() for p in m.parameters() if p.requires_grad)
    t_load = time.perf_counter() - t0
    x = torch.from_numpy(np.load(os.path.join(a.io, "x.npy")))
    ctx = torch.from_numpy(np.load(os.path.join(a.io, "ctx.npy")))
    dout = torch.from_numpy(np.load(os.path.join(a.io, "dout.npy")))
    t = torch.tensor([500.0])
    if a.mode == "fwd":
        x, ctx = x.to(torch.bfloat16), ctx.to(torch.bfloat16)
    hwm_load = status_mib("VmHWM")
    was_reset = reset_peak()
    ts, out0 = [], None
    for s in range(a.steps + 1):
        t1 = time.perf_counter()
        if a.mode == "fwd":
            with torch.inference_mode():
                out = m(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
        else:
            m.zero_grad()
            if a.mode == "lora":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = m(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
            else:
                out = m(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
            out.float().backward(dout)
        ts.append(time.perf_counter() - t1)
        if s == 0:
            out0 = out.detach().float().numpy()
        del out
    ref = np.load(os.path.join(a.io, "out.npy"))
    diff = float(np.abs(out0 - ref).max() / max(np.abs(ref).max(), 1e-30))
    hwm = status_mib("VmHWM")
    timed = sorted(ts[1:]) or ts[:1]  # --steps 0: the warm-up step alone
    k = len(timed)
    med = timed[k // 2] if k % 2 else 0.5 * (timed[k // 2 - 1] + timed[k // 2])
    print(json.dumps({"step_s": med, "min_s": timed[0], "first_s": ts[0], "load_s": t_load,
                      "peak_mib": max(hwm, hwm_load) if was_reset else hwm, "step_peak_mib": hwm if was_reset else -1,
                      "load_peak_mib": hwm_load, "trained": trained, "rel_diff": diff,
                      "torch": torch.__version__.split("+")[0]}))


def worker_attn(a):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    S = a.tokens
    rss0 = status_mib("VmRSS")
    g = torch.Generator().manual_seed(3)
    # token-major [1, S, H, D] viewed per head as diffusers' attention does; grads land on the leaves
    q, k, v, dout = (torch.randn(1, S, HEADS, HD, generator=g) for _ in range(4))
    if a.bf16:  # the tensors autocast hands SDPA in a bf16 run
        q, k, v, dout = (t.to(torch.bfloat16) for t in (q, k, v, dout))
    for p in (q, k, v):
        p.requires_grad_(True)
    qt, kt, vt = (p.transpose(1, 2) for p in (q, k, v))
    choice = int(torch._fused_sdp_choice(qt, kt, vt))
    names = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}
    backend = names.get(choice, str(choice))
    if choice == 0 and 3 * HEADS * S * S * 4 > a.max_bytes:
        print(json.dumps({"skipped": f"the math kernel would hold {3 * HEADS * S * S * 4 / 2**30:.0f} GiB of S x S"}))
        return
    base = status_mib("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    out = F.scaled_dot_product_attention(qt, kt, vt)
    tf = time.perf_counter() - t0
    t0 = time.perf_counter()
    out.backward(dout.transpose(1, 2))
    tb = time.perf_counter() - t0
    hwm = status_mib("VmHWM")
    operands = 8 * S * HEADS * HD * (2 if a.bf16 else 4) / 2**20  # q, k, v, out, dout, dq, dk, dv
    print(json.dumps({"fwd_s": tf, "bwd_s": tb, "backend": backend, "start_mib": rss0, "base_mib": base,
                      "peak_mib": hwm, "extra_mib": hwm - rss0 - operands, "operands_mib": operands}))


def worker_gemm(a):
    import torch
    torch.set_num_threads(a.threads)
    res = {}
    for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(1920, 1536).to(dt)
        w = torch.randn(8960, 1536).to(dt)
        best = 1e30
        for r in range(4):
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, w)
            t = time.perf_counter() - t0
            if r:
                best = min(best, t)
        res[name] = 2 * 1920 * 1536 * 8960 / best / 1e9
    print(json.dumps(res))


def worker(argv):
    ap = argparse.ArgumentParser(prog="bench_transformer.py worker")
    ap.add_argument("what", choices=["run", "attn", "gemm"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--model")
    ap.add_argument("--io")
    ap.add_argument("--mode", choices=["lora", "full", "fwd"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=32760)
    ap.add_argument("--max-bytes", type=float, default=8 * 2**30)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args(argv)
    {"run": worker_run, "attn": worker_attn, "gemm": worker_gemm}[a.what](a)


# ---- the driver ----------------------------------------------------------------------------------

def mkvar(name):
    r = subprocess.run(["make", "-s", "--no-print-directory", "--eval=print-%: ; @echo $($*)", f"print-{name}"],
                       cwd=ROOT, check=True, capture_output=True, text=True)
    return r.stdout.strip()


def build_driver(work, build, make_lib):
    lib = os.path.join(build, "libdfm.a")
    if make_lib:
        subprocess.run(["make", "-s", "--no-print-directory", lib], cwd=ROOT, check=True)
    exe = os.path.join(work, "bench_transformer")
    cmd = f"{os.environ.get('CC', 'cc')} {mkvar('CFLAGS')} -o {exe} scripts/bench_transformer.c {lib} {mkvar('LDLIBS')}"
    subprocess.run(cmd, shell=True, cwd=ROOT, check=True)
    return exe


def kv(line):
    out = {}
    for f in line.split():
        k, v = f.split("=", 1)
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


MMAP_FIXED = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")


def run_dfm(exe, *args, env=None):
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"bench_transformer: {exe} {' '.join(map(str, args))} failed:\n{r.stderr}")
    return kv(r.stdout.strip().splitlines()[-1])


def run_torch(py, *args):
    r = subprocess.run([py, os.path.abspath(__file__), "worker", *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        print(f"bench_transformer: torch worker {' '.join(map(str, args))} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def block_flops(n, L):
    """forward GEMM and attention FLOPs of one block at n tokens and L text rows"""
    gemm = 2 * n * D * D * 4 + 2 * n * D * D * 2 + 2 * L * D * D * 2 + 2 * n * D * FFN * 2
    attn = 4 * n * n * D + 4 * n * L * D
    return gemm, attn


def step_flops(mode, layers, n, L):
    """useful work of one step: forward, plus for training dx of every GEMM (and dW when full) and
    the attention backward (2.5x its forward: FlashAttention-2's five products against two)"""
    g, at = block_flops(n, L)
    g = g * layers + 2 * L * (TEXT_DIM * D + D * D) + 2 * n * D * (64 + 64)
    at *= layers
    if mode == "fwd":
        return g + at
    return g * (3 if mode == "full" else 2) + at * 3.5


def fmt_mib(x):
    return f"{x:8.0f}" if x is not None and x >= 0 else f"{'-':>8s}"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        return worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="?", default=os.path.join(ROOT, "bench-out"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=3, help="timed steps per process after a warm-up; the median counts")
    ap.add_argument("--rounds", type=int, default=2,
                    help="processes per configuration, interleaved; the lowest median counts")
    ap.add_argument("--python", default=sys.executable, help="the interpreter with torch, diffusers and peft")
    ap.add_argument("--build", default="build", help="the build directory holding libdfm.a")
    ap.add_argument("--no-make", action="store_true", help="link against the existing BUILD/libdfm.a without make")
    ap.add_argument("--attn-tokens", type=int, default=7800,
                    help="attention-alone sequence (7,800: 480x832x17; 32,760: 480x832x81, ~15x longer)")
    ap.add_argument("--no-attn", action="store_true")
    ap.add_argument("--no-memory", action="store_true", help="skip the 1-vs-2-block memory runs")
    ap.add_argument("--mem-tokens", type=int, nargs=2, default=[1280, 5120], metavar=("N1", "N2"),
                    help="token counts of the memory runs (square latents 5 x h x w; N1 must be 1,280)")
    ap.add_argument("--mem-check-long", action="store_true",
                    help="also measure 1 and 2 blocks at 32,760 tokens and state the 30-block peak from them "
                         "(slow: about 8 minutes on 2 cores)")
    ap.add_argument("--keep", action="store_true", help="keep the model directories")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    exe = build_driver(a.work, a.build, not a.no_make)
    try:
        have_torch = subprocess.run([a.python, "-c", "import torch, diffusers, peft, numpy"],
                                    capture_output=True).returncode == 0
    except OSError:
        have_torch = False
    if not have_torch:
        print(f"(the diffusers side is skipped: no torch, diffusers, peft and numpy in {a.python}; "
              "BENCH_PYTHON=... to name an interpreter that has them)")
    tmp = tempfile.mkdtemp(prefix="dfm-bench-wan-", dir=os.environ.get("TMPDIR"))
    try:
        report(a, exe, have_torch, tmp)
    finally:
        if a.keep:
            print(f"  (model directories kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(a, exe, have_torch, tmp):
    th = a.threads
    models = {}
    for layers in (1, 2):
        d = os.path.join(tmp, f"wan_1.3b_width_L{layers}")
        os.makedirs(d)
        run_dfm(exe, "write", d, LAYOUT, "--layers", layers)
        models[layers] = d

    gemm = run_dfm(exe, "gemm", "--threads", th)
    tg = run_torch(a.python, "gemm", "--threads", th) if have_torch else None

    n, L = 5 * 16 * 24, 512
    modes = [("lora", "(a) LoRA r32, bf16 base + compute"), ("full", "(b) full f32, all trainable"),
             ("fwd", "(c) forward bf16 (sampling step)")]
    # each round runs every configuration once, interleaved, so that a busy moment on a shared machine
    # hits all alike; per configuration the round with the lowest median counts
    best = {}
    for _ in range(max(a.rounds, 1)):
        for mode, label in modes:
            io = os.path.join(tmp, f"io_{mode}")
            os.makedirs(io, exist_ok=True)
            res = {"dfm": run_dfm(exe, "run", models[2], "--mode", mode, "--threads", th, "--steps", a.steps,
                                  "--save", io)}
            if have_torch:
                res["torch"] = run_torch(a.python, "run", "--model", models[2], "--io", io, "--mode", mode,
                                         "--threads", th, "--steps", a.steps)
            for k, v in res.items():
                if v and ((mode, k) not in best or v["step_s"] < best[mode, k]["step_s"]):
                    best[mode, k] = v
    rows = [(mode, label, best[mode, "dfm"], best.get((mode, "torch"))) for mode, label in modes]

    tv = tg and "torch " + str(rows[0][3]["torch"] if rows[0][3] else "")
    print(f"Wan 2.1 transformer, 1.3B width (dim {D}, {HEADS} heads x {HD}, ffn {FFN}, text_dim {TEXT_DIM}), 2 of 30 "
          f"blocks, random weights;")
    print(f"  latent [1, 16, 5, 32, 48] (17 frames 256x384: {n:,} tokens), {L} text rows, {th} threads;")
    print(f"  each configuration in its own process, median of {a.steps} steps, best of {a.rounds} interleaved rounds")
    line = f"  machine GEMM rate now (1920 x 8960 x 1536): OpenBLAS sgemm {gemm['sgemm_gflops']:.0f} GFLOP/s"
    if tg:
        line += f"; torch f32 {tg['f32']:.0f}, torch bf16 {tg['bf16']:.0f} GFLOP/s"
    print(line)
    print(f"  {'':34s} {'s/step':>16s} {'speed':>7s} {'peak MiB':>17s} {'memory':>7s} {'dfm':>14s} {'out':>9s}")
    print(f"  {'':34s} {'dfm':>8s}{'diffusers':>10s} {'ratio':>6s} {'dfm':>8s}{'diffusers':>10s} {'ratio':>6s} "
          f"{'GFLOP/s':>8s}{'of sgemm':>9s} {'rel diff':>8s}")
    for mode, label, r, t in rows:
        work = step_flops(mode, 2, n, L)
        gf = work / r["step_s"] / 1e9
        ts = f"{t['step_s']:10.2f}" if t else f"{'-':>10s}"
        sp = f"{t['step_s'] / r['step_s']:6.2f}x" if t else f"{'n/a':>7s}"
        tm = f"{t['peak_mib']:10.0f}" if t else f"{'-':>10s}"
        mr = f"{r['peak_mib'] / t['peak_mib']:6.2f}x" if t else f"{'n/a':>7s}"
        df = f"{t['rel_diff']:9.1e}" if t else f"{'-':>9s}"
        print(f"  {label:34s} {r['step_s']:8.2f}{ts} {sp} {r['peak_mib']:8.0f}{tm} {mr} {gf:8.1f}"
              f"{gf / gemm['sgemm_gflops']:8.0%} {df}")
    print("  speed ratio = diffusers s/step / dfm s/step (above 1: dfm faster); memory ratio = dfm peak / diffusers")
    print("  peak (below 1: dfm smaller); peak = VmHWM of the whole process (weights, activations, and for diffusers")
    print("  the Python and torch runtime). GFLOP/s: forward GEMMs + attention, backward dx (+ dW when full) + 2.5x")
    print("  the attention. rel diff: max |dfm - diffusers| / max |diffusers| over the warm-up step's output (LoRA B")
    print("  starts at zero, so (a) compares the bf16 base).")
    for mode, label, r, t in rows:
        tr = f"; diffusers {t['step_peak_mib']:.0f} MiB, load {t['load_s']:.1f} s" if t else ""
        print(f"  {mode}: peak during the steps dfm {r['step_peak_mib']:.0f} MiB (weights {r['owned_mib']:.0f} MiB owned, "
              f"{r['mapped_mib']:.0f} mapped;")
        print(f"    load {r['load_s']:.1f} s; {int(r['trained']):,} parameters trained){tr}")

    if not a.no_attn:
        print()
        S = a.attn_tokens
        fl = 4 * HEADS * S * S * HD
        print(f"attention alone: {S:,} tokens, {HEADS} heads x {HD}, token-major [1, S, 12, 128] as the model "
              f"calls it, forward + backward, {th} threads")
        for bf in (False, True):
            flag = ["--bf16"] if bf else []
            ra = run_dfm(exe, "attn", "--tokens", S, "--threads", th, *flag)
            ta = run_torch(a.python, "attn", "--tokens", S, "--threads", th, *flag) if have_torch else None
            dt = "bf16" if bf else "f32"
            print(f"  {dt + ':':30s} {'fwd s':>8s} {'bwd s':>8s} {'GFLOP/s':>8s} {'extra MiB':>10s}   (operands q k v out "
                  f"dout dq dk dv: {ra['operands_mib']:.0f} MiB f32)")
            print(f"  {'dfm_op_sdpa + _bwd':30s} {ra['fwd_s']:8.2f} {ra['bwd_s']:8.2f} "
                  f"{3.5 * fl / (ra['fwd_s'] + ra['bwd_s']) / 1e9:8.1f} {ra['extra_mib']:10.0f}")
            if ta and "skipped" in ta:
                print(f"  torch F.scaled_dot_product_attention: skipped ({ta['skipped']})")
            elif ta:
                print(f"  {'torch sdpa (' + ta['backend'] + ' kernel)':30s} {ta['fwd_s']:8.2f} {ta['bwd_s']:8.2f} "
                      f"{3.5 * fl / (ta['fwd_s'] + ta['bwd_s']) / 1e9:8.1f} {ta['extra_mib']:10.0f}")
                print(f"  speed ratio (torch / dfm): forward {ta['fwd_s'] / ra['fwd_s']:.2f}x, backward "
                      f"{ta['bwd_s'] / ra['bwd_s']:.2f}x, both {(ta['fwd_s'] + ta['bwd_s']) / (ra['fwd_s'] + ra['bwd_s']):.2f}x")
        print("  bf16: dfm rounds f32 operands to bf16 before each product (f32 softmax and accumulation), torch")
        print("  runs SDPA on bf16 tensors as autocast hands them; extra = peak RSS beyond the operands (torch:")
        print("  beyond its runtime before the operands)")
        if S != 32760:
            print(f"  (32,760 tokens, 480x832x81, is {(32760 / S) ** 2:.0f}x this work: --attn-tokens 32760, "
                  f"BENCH_LONG=1 in make bench)")

    if not a.no_memory:
        print()
        memory(a, exe, models)


def memory(a, exe, models):
    th = a.threads
    n1, n2 = a.mem_tokens
    big = 32760

    def latent(tokens):  # 5 latent frames (17 video frames), square h x w patches
        side = int(round((tokens / 5) ** 0.5))
        return 5, 2 * side, 2 * side

    def run(tokens, ckpt, layers, fixed=True):
        F, H, W = (21, 60, 104) if tokens == big else latent(tokens)
        args = ["run", models[layers], "--mode", "lora", "--threads", th, "--steps", 0, "--latent", F, H, W]
        return run_dfm(exe, *(args + (["--checkpoint"] if ckpt else [])), env=MMAP_FIXED if fixed else None)

    meas = {}
    for tokens, ckpt in ((n1, 0), (n1, 1), (n2, 1)):
        for layers in (1, 2):
            meas[tokens, ckpt, layers] = run(tokens, ckpt, layers)
    dflt = run(n2, 1, 2, fixed=False)
    gib = 2**30 / 2**20
    print("LoRA training memory, dfm (bf16 frozen base, bf16 compute, r32 on the default targets, 512 text rows,")
    print(f"  {th} threads): peak RSS (VmHWM, MiB) of one step with 1 and 2 blocks")
    print(f"  {'tokens':>7s} {'checkpointing':>13s} {'1 block':>9s} {'2 blocks':>9s} {'per block':>10s} {'base':>9s}")
    per = {}
    for (tokens, ckpt) in ((n1, 0), (n1, 1), (n2, 1)):
        p1, p2 = meas[tokens, ckpt, 1], meas[tokens, ckpt, 2]
        per[tokens, ckpt] = (p2["peak_mib"] - p1["peak_mib"], 2 * p1["peak_mib"] - p2["peak_mib"])
        print(f"  {tokens:7,d} {'yes' if ckpt else 'no':>13s} {p1['peak_mib']:9.0f} {p2['peak_mib']:9.0f} "
              f"{per[tokens, ckpt][0]:10.1f} {per[tokens, ckpt][1]:9.1f}")
    # adapters: trained elements (their f32 values and gradients are in the measured peaks); AdamW
    # adds two f32 moments per element, not measured here
    tr1, tr2 = meas[n1, 1, 1]["trained"], meas[n1, 1, 2]["trained"]
    ntr = tr1 + (FULL_LAYERS - 1) * (tr2 - tr1)
    adam = 8 * ntr / 2**20
    wblock = meas[n1, 1, 2]["owned_mib"] - meas[n1, 1, 1]["owned_mib"]
    weights = meas[n1, 1, 1]["owned_mib"] + (FULL_LAYERS - 1) * wblock
    print(f"  (run with MALLOC_MMAP_THRESHOLD_={MMAP_FIXED['MALLOC_MMAP_THRESHOLD_']}: every tensor mapped and returned "
          "when freed, so the peak is")
    print(f"  live memory; glibc's default keeps freed chunks under 32 MiB in its heap: the 2-block {n2:,}-token run")
    print(f"  peaks at {dflt['peak_mib']:.0f} MiB with it. Tensors of 32,760 tokens are all over 32 MiB, mapped either way.)")
    print(f"  per block = peak(2) - peak(1): the block's bf16 weights ({wblock:.0f} MiB), its adapters and what the")
    print("  training forward keeps per block; base = peak(1) - per block: embedders, head, one block's working set")
    print("  in the backward, the runtime. 30 blocks = base + 30 x per block + AdamW's two f32 moments for the")
    print(f"  {ntr:,.0f} adapter parameters ({adam:.0f} MiB; the step here has no optimizer).")
    print(f"  weights of the 30-block model as dfm holds them: {weights:.0f} MiB = {weights / gib:.2f} GiB (1.42B "
          f"params x 2 B = {1.419e9 * 2 / 2**30:.2f} GiB)")

    def verdict(e):
        return f"{e:.0f} MiB = {e / gib:.2f} GiB -> {'fits' if e < 24 * gib else 'does NOT fit'} 24 GiB"

    for ckpt in (1, 0):
        pb, base = per[n1, ckpt]
        print(f"  estimated peak, 30 blocks, 256x256x17 ({n1:,} tokens), {'with' if ckpt else 'without'} "
              f"checkpointing: {verdict(base + FULL_LAYERS * pb + adam)}")
    # 32,760 tokens: base and per block are affine in the tokens (no S x S anywhere): the line
    # through the n1 and n2 runs
    (pb1, b1), (pb2, b2) = per[n1, 1], per[n2, 1]
    pbig = pb1 + (pb2 - pb1) * (big - n1) / (n2 - n1)
    bbig = b1 + (b2 - b1) * (big - n1) / (n2 - n1)
    print(f"  estimated peak, 30 blocks, 480x832x81 ({big:,} tokens), with checkpointing: "
          f"{verdict(bbig + FULL_LAYERS * pbig + adam)}")
    print(f"    (per block {pbig:.0f} MiB, base {bbig:.0f} MiB: linear in the tokens through the {n1:,} and {n2:,} runs)")
    if a.mem_check_long:
        # measured at the long grid itself: 1 and 2 blocks (a line through two short runs turns a few
        # MiB of noise in their per-block difference into GiB at 32,760 tokens)
        r1, r2 = run(big, 1, 1), run(big, 1, 2)
        pm = r2["peak_mib"] - r1["peak_mib"]
        bm = r1["peak_mib"] - pm
        print(f"  measured at {big:,} tokens with checkpointing: 1 block {r1['peak_mib']:.0f} MiB, 2 blocks "
              f"{r2['peak_mib']:.0f} MiB ({r1['step_s']:.0f} s, {r2['step_s']:.0f} s a step)")
        print(f"  peak, 30 blocks, 480x832x81 from these: {verdict(bm + FULL_LAYERS * pm + adam)}")
        print(f"    (per block {pm:.0f} MiB, base {bm:.0f} MiB; the line above predicted {pbig:.0f} and {bbig:.0f})")

if __name__ == "__main__":
    main()
