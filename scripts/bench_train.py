#!/usr/bin/env python3
"""dfm-train benchmark for `make bench`: a whole training run of dfm-train (shards read on its loader
thread, forward, backward, AdamW, gradient clipping, progress lines, TensorBoard events, the checkpoint
at the end) against the same loop written the usual way in PyTorch over the same shards: diffusers'
WanTransformer3DModel with the same random weights, PEFT LoRA, torch.optim.AdamW, clip_grad_norm_ 1.0
and the flow-matching loss (x_t = (1 - s) x0 + s eps, t = 1000 s, target eps - x0, MSE in f32;
reference/wan.md 6). Same threads on both sides, every run in its own process.

The model: the real 1.3B width (dim 1536, 12 heads x 128, ffn 8960, text_dim 4096, freq_dim 256, in/out
16, patch [1,2,2]; config from tests/fixtures/wan_transformer_layout) with 2 of its 30 blocks, random
weights made once by diffusers and written with save_pretrained (f32 safetensors, ~470 MB) into a temp
directory that both sides load. The data: --samples WebDataset samples in one tar shard, written here
with tarfile as dfm-shard lays them out (KEY.latents.npy [16, 5, 32, 48] f16 = 17 frames 256x384, 1,920
tokens; KEY.text.npy [L, 4096] f16 with L of 90..110 valid rows, which both sides zero-pad to 512 as
the Wan pipeline does; KEY.json with the bucket). Batch 1, --steps optimizer steps:
  (a) LoRA rank 32 (alpha 32) on to_q, to_k, to_v, to_out.0, ffn.net.0.proj, ffn.net.2 of every block,
      frozen base in bf16, bf16 compute (dfm: model.dtype bf16, model.compute bf16; torch: PEFT
      adapters in f32 on the bf16 base under torch.autocast("cpu", bfloat16));
  (b) full fine-tuning in f32 (dfm: lora.rank 0, model.compute f32; torch: f32 model, no autocast).
Activation checkpointing off on both sides (2 blocks at 1,920 tokens fit easily).
Seconds per step are the steady state: the median interval between the progress lines of steps
--skip+1 .. --steps (dfm-train --logging.every 1; each line timestamped as it arrives; the median
because other work on a shared machine lands on single steps), and the same steps' median on the
torch side (each step there: read the sample from the tar, forward, loss, backward, clip, AdamW,
zero_grad, loss.item()). With --rounds N each configuration runs N times on each side, interleaved,
and the run with the lowest median counts. Peak memory: maximum RSS of the whole process (GNU time
%M; os.wait4's rusage without it). dfm's data wait: its closing summary's "data wait X s".

--mem-30: the peak RSS of LoRA training of the full 30-block 1.3B model at 256x256x17 (latents
[16, 5, 32, 32], 1,280 tokens, 512 text rows) with activation checkpointing, 2 steps of dfm-train on
random BF16 weights in the released layout (written here with numpy, ~2.8 GB under $TMPDIR, deleted
afterwards). One to two minutes per step on 2 cores.

--only dist (its own invocation in `make bench`; no torch): data-parallel dfm-train, LoRA (a) at the
same global batch 2 and steps, 1 rank (--threads N, data.batch_size 2) against 2 ranks under mpirun
(flags of tests/lib.sh's mpirun_n; N/2 threads and data.batch_size 1 each): median s/step, samples/s,
the ratio of speeds and the summary's communication seconds and share; skipped without mpirun or
dfm-dist-mpi.so in --bin. `bench_train.py --bin build-bd/bin --threads 2 --only dist --samples 4 --steps 6
--skip 2` on 2 cores of a shared machine under load (load average 8-9), so rough figures:
                                         s/step samples/s  ratio    communication last loss
  1 rank,  2 threads, batch 2             23.00 (22.07)     0.087  1.00x                -    2.3354
  2 ranks, 1 thread each, batch 1 each    19.20 (17.08)     0.104  1.20x   1.08 s    1%    2.3354
The collectives cost little here (shared memory, 2.9 M LoRA gradients); 2 ranks gain on a loaded machine
as each process runs alone and meets the other once a step, where one rank's 2 threads meet at every op.

usage: bench_train.py [WORKDIR] [--bin DIR] [--python PY] [--threads N] [--steps N] [--skip N]
                      [--rounds N] [--samples N] [--only lora|full|mem-30|dist] [--mem-30] [--no-torch] [--keep]
       bench_train.py worker init|train ...   (the torch side; internal)"""
import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LAYOUT = os.path.join(ROOT, "tests", "fixtures", "wan_transformer_layout")
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]
TEXT_LEN, TEXT_DIM = 512, 4096
GNU_TIME = "/usr/bin/time"


def layout_config(layers):
    with open(os.path.join(LAYOUT, "config.json")) as f:
        cfg = json.load(f)
    cfg["num_layers"] = layers
    return cfg


# ---- the torch side (run as `bench_train.py worker ...` under --python) ---------------------------

def worker_init(a):
    """the 2-block model: diffusers' own random init, saved as a user's fine-tuned model would be"""
    import torch
    from diffusers import WanTransformer3DModel
    torch.manual_seed(0)
    cfg = {k: v for k, v in layout_config(a.layers).items() if not k.startswith("_")}
    m = WanTransformer3DModel(**cfg)
    m.save_pretrained(a.model, safe_serialization=True)
    print(json.dumps({"params": sum(p.numel() for p in m.parameters())}))


def read_shard(path):
    """WebDataset reading as a user writes it: index the tar once, then per sample extract its
    members and parse them with numpy"""
    tf = tarfile.open(path)
    samples = {}
    for m in tf.getmembers():
        key, _, field = m.name.partition(".")
        samples.setdefault(key, {})[field] = m
    return tf, [samples[k] for k in sorted(samples)]


def load_sample(tf, members, np):
    def npy(field):
        return np.load(io.BytesIO(tf.extractfile(members[field]).read()))
    meta = json.loads(tf.extractfile(members["json"]).read())
    lat = npy("latents.npy").astype(np.float32)
    text = npy("text.npy").astype(np.float32)
    assert list(lat.shape) == meta["latents"]["shape"]
    ctx = np.zeros((TEXT_LEN, text.shape[1]), np.float32)  # the pipeline's zero padding to 512 rows
    ctx[:min(len(text), TEXT_LEN)] = text[:TEXT_LEN]
    return lat, ctx


def worker_train(a):
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
        from peft import LoraConfig
        m = WanTransformer3DModel.from_pretrained(a.model, torch_dtype=torch.bfloat16)
        m.requires_grad_(False)
        m.add_adapter(LoraConfig(r=a.rank, lora_alpha=a.rank, init_lora_weights=True, target_modules=TARGETS))
        for n, p in m.named_parameters():
            if "lora_" in n:  # adapters in f32 on the bf16 base, as the trainers keep them
                p.data = p.data.float()
                p.requires_grad_(True)
    m.train()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    t_load = time.perf_counter() - t0
    tf, samples = read_shard(a.shard)
    rng = np.random.default_rng(0)
    order, ts, losses = [], [], []
    for step in range(a.steps):
        t1 = time.perf_counter()
        if not order:
            order = list(rng.permutation(len(samples)))
        lat, ctx = load_sample(tf, samples[order.pop()], np)
        x0 = torch.from_numpy(lat)[None]
        ctx = torch.from_numpy(ctx)[None]
        sigma = torch.sigmoid(torch.randn(1))  # logit-normal (0, 1), shift 1: dfm-train's default
        eps = torch.randn_like(x0)
        s = sigma.view(1, 1, 1, 1, 1)
        xt = (1 - s) * x0 + s * eps
        if a.mode == "lora":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pred = m(hidden_states=xt, timestep=sigma * 1000, encoder_hidden_states=ctx, return_dict=False)[0]
        else:
            pred = m(hidden_states=xt, timestep=sigma * 1000, encoder_hidden_states=ctx, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred.float(), eps - x0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        ts.append(time.perf_counter() - t1)
        print(f"step {step + 1}/{a.steps} loss {losses[-1]:.4f} {ts[-1]:.2f} s", file=sys.stderr, flush=True)
    print(json.dumps({"step_times": ts, "losses": losses, "load_s": t_load, "trained": sum(p.numel() for p in params),
                      "torch": torch.__version__.split("+")[0]}))


def worker(argv):
    ap = argparse.ArgumentParser(prog="bench_train.py worker")
    ap.add_argument("what", choices=["init", "train"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--shard")
    ap.add_argument("--mode", choices=["lora", "full"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args(argv)
    {"init": worker_init, "train": worker_train}[a.what](a)


# ---- data and models (numpy) ----------------------------------------------------------------------

def write_shard(path, n, latent_shape, bucket, seed=0):
    """n samples in one WebDataset tar as dfm-shard writes them: KEY.json, KEY.latents.npy [C,F,H,W]
    f16, KEY.text.npy [L, 4096] f16 (L valid rows only, 90..110), fixed mtimes, ustar"""
    import numpy as np
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tf:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o444, 0
            tf.addfile(ti, io.BytesIO(data))

        def npy(arr):
            b = io.BytesIO()
            np.save(b, arr)
            return b.getvalue()
        for i in range(n):
            key = f"sample{i:06d}"
            rows = int(rng.integers(90, 111))
            lat = rng.standard_normal(latent_shape, dtype=np.float32).astype(np.float16)
            text = (0.2 * rng.standard_normal((rows, TEXT_DIM), dtype=np.float32)).astype(np.float16)
            meta = {"media": "video", "frames": bucket[2],
                    "bucket": {"width": bucket[0], "height": bucket[1], "frames": bucket[2]},
                    "latents": {"shape": list(latent_shape), "dtype": "float16", "normalized": True},
                    "text": {"tokens": rows, "max_length": TEXT_LEN, "dim": TEXT_DIM, "dtype": "float16"}}
            add(key + ".json", json.dumps(meta).encode())
            add(key + ".latents.npy", npy(lat))
            add(key + ".text.npy", npy(text))
    os.replace(tmp, path)


def write_layout_model(d, layers, bf16):
    """random weights in the released layout (tests/fixtures/wan_transformer_layout) for `layers`
    blocks: one diffusion_pytorch_model.safetensors + config.json. bf16: each tensor in the dtype
    from_pretrained(torch_dtype=bfloat16) gives it (BF16, the keep-in-f32 modules F32); else all F32.
    Values as torch's default init scales them: linear and conv weights and biases uniform in
    +-1/sqrt(fan_in), norm weights 1, norm biases 0, scale_shift_table N(0, 1/dim). Streamed one
    tensor at a time (the largest is 13.8 M elements)."""
    import numpy as np
    with open(os.path.join(LAYOUT, "layout.json")) as f:
        layout = json.load(f)
    keep = {}
    for name, t in layout.items():
        if name.startswith("blocks.") and int(name.split(".")[1]) >= layers:
            continue
        keep[name] = ("BF16" if bf16 and t["dtype_bf16_load"] == "BF16" else "F32", t["shape"])
    header, off = {}, 0
    for name, (dt, shape) in keep.items():
        n = int(np.prod(shape)) * (2 if dt == "BF16" else 4)
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    rng = np.random.default_rng(1)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(layout_config(layers), f, indent=2)
    path = os.path.join(d, "diffusion_pytorch_model.safetensors")
    with open(path + ".tmp", "wb") as f:
        f.write(len(hb).to_bytes(8, "little") + hb)
        for name, (dt, shape) in keep.items():
            n = int(np.prod(shape))
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name and leaf in ("weight", "bias"):
                v = np.full(n, 1.0 if leaf == "weight" else 0.0, np.float32)
            elif "scale_shift_table" in name:
                v = rng.standard_normal(n, dtype=np.float32) / np.float32(shape[-1] ** 0.5)
            else:
                wshape = keep[name[:-len(leaf)] + "weight"][1]
                fan_in = int(np.prod(wshape[1:]))
                v = rng.random(n, dtype=np.float32)
                v -= np.float32(0.5)
                v *= np.float32(2 / fan_in ** 0.5)
            if dt == "BF16":
                v = (v.view(np.uint32) >> 16).astype(np.uint16)  # truncation: random values need no rounding
            f.write(v.tobytes())
    os.replace(path + ".tmp", path)
    return off + 8 + len(hb)


# ---- the driver ----------------------------------------------------------------------------------

def timed_popen(cmd, tmp, on_line=None, env=None):
    """run cmd, stream its stderr lines to on_line(line, t) with arrival times; return (rc, stdout,
    stderr text, peak RSS MiB of the process)"""
    tfile = os.path.join(tmp, "time.out")
    gnu = os.access(GNU_TIME, os.X_OK)
    full = [GNU_TIME, "-f", "%M", "-o", tfile] + cmd if gnu else cmd
    p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    err = []
    for line in p.stderr:
        t = time.perf_counter()
        err.append(line)
        if on_line:
            on_line(line, t)
    out = p.stdout.read()
    if gnu:
        rc = p.wait()
        peak = -1.0
        try:
            with open(tfile) as f:
                peak = int(f.read().strip().splitlines()[-1]) / 1024
        except (OSError, ValueError, IndexError):
            pass
    else:
        _, status, ru = os.wait4(p.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        peak = ru.ru_maxrss / 1024
    return rc, out, "".join(err), peak


STEP_RE = re.compile(r"step (\d+)/(\d+)\s+loss ([-+0-9.eEnaif]+)")
SUMMARY_RE = re.compile(r"steps (\d+)\.\.(\d+) of \d+, .*?, ([0-9.]+) s \(data wait ([0-9.]+) s\)"
                        r"(?:, (\d+) ranks \(communication ([0-9.]+) s, ([0-9.]+)%\))?, last loss")
TRAINABLE_RE = re.compile(r"loaded \(([0-9.]+) s\).*?(\d+) trainable parameters")
START_RE = re.compile(r"info: training \d+ steps")


# Open MPI's mpirun as tests/lib.sh's mpirun_n runs it on one machine, as root too: more ranks than
# cores allowed, unpinned, shared memory only (the single-copy mechanism off: containers without
# ptrace rights refuse it)
MPIRUN_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
              "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}
MPIRUN_ARGS = ["--oversubscribe", "--bind-to", "none", "--mca", "pml", "ob1", "--mca", "btl", "self,vader"]


def run_dfm_train(a, tmp, model, shards, mode, steps, ckpt, label, batch=1, threads=None, ranks=1):
    """one dfm-train run; ranks > 1: under mpirun -np ranks (data.batch_size and threads per rank)"""
    run_dir = os.path.join(tmp, f"run_{label}")
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [os.path.join(a.bin, "dfm-train"), "--model.path", model, "--data.shards", shards,
           "--checkpoint.dir", run_dir, "--train.max_steps", str(steps), "--train.grad_accum", "1",
           "--data.batch_size", str(batch), "--train.checkpointing", "true" if ckpt else "false",
           "--checkpoint.every", "0", "--logging.every", "1", "--optim.lr", "1e-4", "--optim.warmup_steps", "0",
           "--optim.max_grad_norm", "1.0", "--model.text_len", str(TEXT_LEN),
           "--threads", str(threads or a.threads)]
    if mode == "lora":
        cmd += ["--lora.rank", "32", "--lora.alpha", "32", "--model.dtype", "bf16", "--model.compute", "bf16"]
    else:
        cmd += ["--lora.rank", "0", "--model.dtype", "f32", "--model.compute", "f32"]
    cmd += a.dfm_arg
    env = None
    if ranks > 1:
        cmd = ["mpirun"] + MPIRUN_ARGS + ["-np", str(ranks)] + cmd
        env = dict(os.environ, **MPIRUN_ENV)
    marks = {}

    def on_line(line, t):
        mm = STEP_RE.search(line)
        if mm:
            marks[int(mm.group(1))] = (t, float(mm.group(3)))
        elif START_RE.search(line):  # step 1 starts after this line
            marks[0] = (t, float("nan"))
        if a.verbose:
            sys.stderr.write("  dfm| " + line)
    t0 = time.perf_counter()
    rc, _, err, peak = timed_popen(cmd, tmp, on_line, env)
    wall = time.perf_counter() - t0
    if rc:
        sys.exit(f"bench_train: dfm-train failed (exit {rc}):\n  {' '.join(cmd)}\n{err[-3000:]}")
    sm, tm = SUMMARY_RE.search(err), TRAINABLE_RE.search(err)
    if not sm or len(marks) < steps:
        sys.exit(f"bench_train: dfm-train's output has not the expected step lines and summary:\n{err[-3000:]}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"marks": marks, "train_s": float(sm.group(3)), "wait_s": float(sm.group(4)), "peak_mib": peak,
            "ranks": int(sm.group(5) or 1), "comm_s": float(sm.group(6) or 0), "comm_pct": float(sm.group(7) or 0),
            "wall_s": wall, "load_s": float(tm.group(1)) if tm else -1, "trained": int(tm.group(2)) if tm else -1,
            "cmd": cmd}


def median(xs):
    xs = sorted(xs)
    k = len(xs)
    return xs[k // 2] if k % 2 else 0.5 * (xs[k // 2 - 1] + xs[k // 2])


def dfm_step_times(r, steps):
    """seconds of steps 1..steps: the intervals between the progress lines (step 1 from the
    "training N steps" line)"""
    m = r["marks"]
    return [m[i][0] - m[i - 1][0] if i - 1 in m else float("nan") for i in range(1, steps + 1)]


def run_torch(a, tmp, model, shard, mode):
    cmd = [a.python, os.path.abspath(__file__), "worker", "train", "--model", model, "--shard", shard,
           "--mode", mode, "--steps", str(a.steps), "--threads", str(a.threads)]

    def on_line(line, t):
        if a.verbose:
            sys.stderr.write("  torch| " + line)
    rc, out, err, peak = timed_popen(cmd, tmp, on_line)
    if rc:
        print(f"bench_train: torch worker ({mode}) failed:\n{err[-3000:]}", file=sys.stderr)
        return None
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_mib"] = peak
    return r


def load_line():
    try:
        with open("/proc/loadavg") as f:
            la = f.read().split()[:3]
        return f"load average {' '.join(la)} on {os.cpu_count()} cores"
    except OSError:
        return "load average unknown"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        return worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="?", default=os.path.join(ROOT, "bench-out"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "bin"), help="the directory holding dfm-train")
    ap.add_argument("--python", default=sys.executable, help="the interpreter with torch, diffusers and peft")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per run (>= skip + 2)")
    ap.add_argument("--skip", type=int, default=2, help="leading steps left out of the steady state")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs per configuration and side, interleaved; the one with the lowest median counts")
    ap.add_argument("--samples", type=int, default=8, help="samples in the shard (runs cycle through them)")
    ap.add_argument("--only", choices=["lora", "full", "mem-30", "dist"],
                    help="run one configuration (mem-30: only the 30-block memory run; dist: only LoRA on 1 rank "
                         "against 2 ranks under mpirun, global batch 2)")
    ap.add_argument("--mem-30", action="store_true",
                    help="also: peak RSS of 30-block LoRA training at 256x256x17 with checkpointing (writes ~2.8 GB)")
    ap.add_argument("--no-torch", action="store_true", help="dfm's side only")
    ap.add_argument("--dfm-arg", action="append", default=[],
                    help="one more dfm-train argument (repeatable), e.g. --dfm-arg=--train.pack_frozen --dfm-arg=true")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo both sides' progress lines")
    a = ap.parse_args()
    if a.steps < a.skip + 2:
        ap.error("--steps must be at least --skip + 2")
    if not os.access(os.path.join(a.bin, "dfm-train"), os.X_OK):
        sys.exit(f"bench_train: no dfm-train in {a.bin} (--bin DIR)")
    try:
        import numpy  # noqa: F401
    except ImportError:
        sys.exit("bench_train: needs numpy (pip install numpy)")
    have_torch = not a.no_torch and a.only not in ("mem-30", "dist")
    if have_torch:
        try:
            have_torch = subprocess.run([a.python, "-c", "import torch, diffusers, peft, numpy"],
                                        capture_output=True).returncode == 0
        except OSError:
            have_torch = False
        if not have_torch:
            print(f"(the PyTorch side is skipped: no torch, diffusers, peft and numpy in {a.python}; "
                  "BENCH_PYTHON=... to name an interpreter that has them)")
    os.makedirs(a.work, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="dfm-bench-train-", dir=os.environ.get("TMPDIR"))
    try:
        if a.only == "dist":
            dist_report(a, tmp)
        elif a.only != "mem-30":
            report(a, have_torch, tmp)
        if a.mem_30 or a.only == "mem-30":
            if a.only != "mem-30":
                print()
            mem30(a, tmp)
    finally:
        if a.keep:
            print(f"  (kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(a, have_torch, tmp):
    model = os.path.join(tmp, "wan_1.3b_width_L2")
    if have_torch:
        r = subprocess.run([a.python, os.path.abspath(__file__), "worker", "init", "--model", model, "--layers", "2"],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"bench_train: writing the model with diffusers failed:\n{r.stderr[-3000:]}")
        made = "diffusers' random init, save_pretrained (f32)"
    else:
        write_layout_model(model, 2, bf16=False)
        made = "random f32 weights in the released layout (numpy)"
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    shard = os.path.join(data, "train-000000.tar")
    write_shard(shard, a.samples, (16, 5, 32, 48), (384, 256, 17))

    modes = [("lora", "(a) LoRA r32, bf16 base + compute"), ("full", "(b) full f32, all trainable")]
    if a.only:
        modes = [m for m in modes if m[0] == a.only]
    loads = [("start", load_line())]
    res = {}

    def keep(key, r):  # per configuration and side, the round with the lowest median counts
        if r and (key not in res or median(r["step_times"][a.skip:]) < median(res[key]["step_times"][a.skip:])):
            res[key] = r
    # rounds interleave the configurations so that a busy moment on a shared machine hits all alike
    for rnd in range(a.rounds):
        tag = f" r{rnd + 1}" if a.rounds > 1 else ""
        for mode, _ in modes:
            d = run_dfm_train(a, tmp, model, shard, mode, a.steps, False, mode)
            d["step_times"] = dfm_step_times(d, a.steps)
            keep((mode, "dfm"), d)
            loads.append((f"{mode} dfm{tag}", load_line()))
            if have_torch:
                keep((mode, "torch"), run_torch(a, tmp, model, shard, mode))
                loads.append((f"{mode} torch{tag}", load_line()))

    tv = next((v["torch"] for (m, k), v in res.items() if k == "torch" and v), None)
    print(f"dfm-train, Wan 2.1 at the 1.3B width (dim 1536, 12 heads, ffn 8960, text_dim 4096), 2 of 30 blocks, "
          f"{made};")
    print(f"  {a.samples} samples in one tar shard: latents [16, 5, 32, 48] f16 (17 frames 256x384, 1,920 tokens), "
          f"text [90..110, 4096] f16 padded to {TEXT_LEN};")
    print(f"  batch 1, {a.steps} steps, AdamW lr 1e-4, clip 1.0, no activation checkpointing, {a.threads} threads"
          + (f"; torch {tv}" if tv else ""))
    print(f"  s/step: median of steps {a.skip + 1}..{a.steps} (steady state; the fastest in brackets)"
          + (f", best of {a.rounds} interleaved rounds" if a.rounds > 1 else "") + "; peak MiB: max RSS of the process")
    print(f"  {'':34s} {'s/step':>29s} {'speed':>7s} {'peak MiB':>15s} {'dfm data':>9s} {'last loss':>17s}")
    print(f"  {'':34s} {'dfm':>14s} {'torch':>14s} {'ratio':>7s} {'dfm':>7s} {'torch':>7s} {'wait':>9s} "
          f"{'dfm':>8s} {'torch':>8s}")
    for mode, label in modes:
        d, t = res[mode, "dfm"], res.get((mode, "torch"))
        dt = d["step_times"][a.skip:]
        ds = median(dt)
        if t:
            tt = t["step_times"][a.skip:]
            ts, tm_ = median(tt), min(tt)
        col_t = f"{ts:6.2f} ({tm_:5.2f})" if t else f"{'-':>14s}"
        sp = f"{ts / ds:6.2f}x" if t else f"{'n/a':>7s}"
        pk = f"{t['peak_mib']:7.0f}" if t else f"{'-':>7s}"
        tl = f"{t['losses'][-1]:8.4f}" if t else f"{'-':>8s}"
        wait = f"{100 * d['wait_s'] / d['train_s']:.1f}%" if d["train_s"] > 0 else "-"
        print(f"  {label:34s} {ds:6.2f} ({min(dt):5.2f}) {col_t} {sp} {d['peak_mib']:7.0f} {pk} "
              f"{wait:>9s} {d['marks'][a.steps][1]:8.4f} {tl}")
    print("  ratio = torch s/step / dfm s/step, medians (above 1: dfm faster). dfm data wait = its summary's")
    print("  \"data wait\" over its training time (all steps). Losses differ: each side draws its own noise and sigmas.")
    for mode, _ in modes:
        d, t = res[mode, "dfm"], res.get((mode, "torch"))
        print(f"  {mode}: dfm   load {d['load_s']:4.1f} s, {d['trained']:,} trained, data wait {d['wait_s']:.2f} s of "
              f"{d['train_s']:.1f} s; steps 1..{a.steps}: " + " ".join(f"{x:.2f}" for x in d["step_times"]) + " s")
        if t:
            print(f"  {mode}: torch load {t['load_s']:4.1f} s, {t['trained']:,} trained; steps 1..{a.steps}: "
                  + " ".join(f"{x:.2f}" for x in t["step_times"]) + " s")
    print("  machine load average (1, 5, 15 min) on " + str(os.cpu_count()) + " cores: "
          + "; ".join(f"{k} {v.split(' on ')[0].replace('load average ', '')}" for k, v in loads[:1])
          + "; after " + "; ".join(f"{k} {v.split(' on ')[0].replace('load average ', '')}" for k, v in loads[1:]))


def dist_missing(a):
    """why the data-parallel runs cannot go here (None when they can)"""
    if not shutil.which("mpirun"):
        return "no mpirun (apt-get install openmpi-bin libopenmpi-dev, then rebuild)"
    if not os.path.exists(os.path.join(a.bin, "dfm-dist-mpi.so")) and not os.environ.get("DFM_DIST_PLUGIN"):
        return f"no dfm-dist-mpi.so in {a.bin} (dfm was built without Open MPI: apt-get install libopenmpi-dev, rebuild)"
    return None


def dist_report(a, tmp):
    """LoRA (a) at the same global batch 2: 1 rank with a.threads threads and data.batch_size 2
    against 2 ranks under mpirun with a.threads // 2 threads and data.batch_size 1 each"""
    why = dist_missing(a)
    if why:
        print(f"dfm-train data parallel: skipped ({why})")
        return
    model = os.path.join(tmp, "wan_1.3b_width_L2")
    if not os.path.exists(os.path.join(model, "config.json")):
        write_layout_model(model, 2, bf16=False)
    data = os.path.join(tmp, "data")
    shard = os.path.join(data, "train-000000.tar")
    if not os.path.exists(shard):
        os.makedirs(data, exist_ok=True)
        write_shard(shard, a.samples, (16, 5, 32, 48), (384, 256, 17))
    per = max(1, a.threads // 2)
    confs = [(1, a.threads, 2, f"1 rank,  {a.threads} threads, batch 2"),
             (2, per, 1, f"2 ranks, {per} thread{'s' if per > 1 else ''} each, batch 1 each")]
    loads = [("start", load_line())]
    res = {}
    for rnd in range(a.rounds):
        tag = f" r{rnd + 1}" if a.rounds > 1 else ""
        for ranks, threads, batch, _ in confs:
            d = run_dfm_train(a, tmp, model, shard, "lora", a.steps, False, f"dist{ranks}", batch=batch,
                              threads=threads, ranks=ranks)
            d["step_times"] = dfm_step_times(d, a.steps)
            if ranks not in res or median(d["step_times"][a.skip:]) < median(res[ranks]["step_times"][a.skip:]):
                res[ranks] = d
            loads.append((f"{ranks} rank{'s' if ranks > 1 else ''}{tag}", load_line()))
    print("dfm-train data parallel on the CPU: LoRA r32 (bf16 base + compute) of the 2-block 1.3B-width model, "
          "random f32 weights;")
    print(f"  global batch 2 of latents [16, 5, 32, 48] (1,920 tokens), {a.samples} samples, {a.steps} steps; "
          f"s/step: median of steps {a.skip + 1}..{a.steps}"
          + (f", best of {a.rounds} interleaved rounds" if a.rounds > 1 else ""))
    print(f"  2 ranks: mpirun -np 2 (shared memory); communication: the summary's seconds in collectives "
          f"(waits for the other rank included)")
    print(f"  {'':38s} {'s/step':>14s} {'samples/s':>9s} {'ratio':>6s} {'communication':>16s} {'last loss':>9s}")
    base = median(res[1]["step_times"][a.skip:])
    for ranks, threads, batch, label in confs:
        d = res[ranks]
        dt = d["step_times"][a.skip:]
        sps = median(dt)
        comm = f"{d['comm_s']:6.2f} s {d['comm_pct']:4.0f}%" if d["ranks"] > 1 else f"{'-':>16s}"
        print(f"  {label:38s} {sps:6.2f} ({min(dt):5.2f}) {2 / sps:9.3f} {base / sps:5.2f}x {comm} "
              f"{d['marks'][a.steps][1]:9.4f}")
    print("  ratio = 2 ranks' speed / 1 rank's (s/step medians; above 1: 2 ranks faster)")
    for ranks, _, _, _ in confs:
        d = res[ranks]
        print(f"  {ranks} rank{'s' if ranks > 1 else ' '}: load {d['load_s']:4.1f} s, training {d['train_s']:.1f} s, "
              f"data wait {d['wait_s']:.2f} s; steps 1..{a.steps}: " + " ".join(f"{x:.2f}" for x in d["step_times"]) + " s")
    print("  machine load average (1, 5, 15 min) on " + str(os.cpu_count()) + " cores: "
          + "; ".join(f"{k} {v.split(' on ')[0].replace('load average ', '')}" for k, v in loads[:1])
          + "; after " + "; ".join(f"{k} {v.split(' on ')[0].replace('load average ', '')}" for k, v in loads[1:]))


def mem30(a, tmp):
    model = os.path.join(tmp, "wan_1.3b_L30_bf16")
    t0 = time.perf_counter()
    nbytes = write_layout_model(model, 30, bf16=True)
    t_write = time.perf_counter() - t0
    data = os.path.join(tmp, "data30")
    os.makedirs(data)
    shard = os.path.join(data, "train-000000.tar")
    write_shard(shard, 2, (16, 5, 32, 32), (256, 256, 17), seed=2)
    load0 = load_line()
    try:
        d = run_dfm_train(a, tmp, model, shard, "lora", 2, True, "mem30")
    finally:
        shutil.rmtree(model, ignore_errors=True)
    gib = d["peak_mib"] / 1024
    print("LoRA training memory of the full 30-block 1.3B model, dfm-train (r32 on the default targets, bf16 frozen")
    print(f"  base and compute, activation checkpointing, AdamW), 256x256x17: latents [16, 5, 32, 32] (1,280 tokens),"
          f" {TEXT_LEN} text rows,")
    print(f"  random weights in the released layout ({nbytes / 1e9:.2f} GB of BF16/F32 safetensors, written in "
          f"{t_write:.0f} s, deleted), 2 steps, {a.threads} threads:")
    print(f"  peak RSS {d['peak_mib']:.0f} MiB = {gib:.2f} GiB -> {'fits' if gib < 24 else 'does NOT fit'} 24 GiB; "
          f"load {d['load_s']:.1f} s, steps {' '.join('%.1f' % x for x in dfm_step_times(d, 2))} s, data wait "
          f"{d['wait_s']:.2f} s, {d['trained']:,} trained")
    print(f"  machine: {load0} at the start, {load_line().split(' on ')[0]} at the end")


if __name__ == "__main__":
    main()
