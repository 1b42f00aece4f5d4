#!/usr/bin/env python3
"""VAE encode benchmark for `make bench`: the released Wan 2.1 VAE config (base_dim 96) with random
weights, one 17-frame 256x256 clip, encoded by diffusers on CPU and by dfm-vae-encode with the same
thread count and the same input, in one run. Prints seconds, the ratio, peak memory, the achieved
conv GFLOP/s against the machine's measured fp32 GEMM peak, and the difference of the two results.

usage: bench_vae.py WORKDIR BINDIR [THREADS]"""
import io
import os
import resource
import subprocess
import sys
import time

import msgpack
import numpy as np
import torch
from diffusers import AutoencoderKLWan

work, bindir = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else os.cpu_count()
torch.set_num_threads(threads)
F, H, W = 17, 256, 256
model = os.path.join(work, "wan_vae_real")

torch.manual_seed(0)
if not os.path.exists(os.path.join(model, "diffusion_pytorch_model.safetensors")):
    AutoencoderKLWan().save_pretrained(model)
vae = AutoencoderKLWan.from_pretrained(model).eval()

# One clip of smooth colour ramps with some noise, as uint8 frames.
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:H, 0:W]
frames = np.stack([np.stack([(xx * 0.9 + t * 7) % 256, (yy * 0.8 + t * 3) % 256, (xx + yy + t * 5) % 256], -1)
                   for t in range(F)]).astype(np.float32)
frames = np.clip(frames + rng.normal(0, 8, frames.shape), 0, 255).astype(np.uint8)
x = torch.from_numpy(((frames.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(3, 0, 1, 2).copy())[None]

# Conv FLOPs of the encoder for this input, counted with hooks (2 * MACs).
flops = [0]
def hook(m, inp, out):
    k = int(np.prod(m.weight.shape[1:]))
    flops[0] += 2 * out.numel() * k
hooks = [m.register_forward_hook(hook) for m in vae.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.Conv2d))]
with torch.no_grad():
    vae.encode(x[:, :, :5])  # warm-up (also allocator)
    flops[0] = 0
    t0 = time.perf_counter()
    mean = vae.encode(x).latent_dist.mean
    t_ref = time.perf_counter() - t0
for h in hooks:
    h.remove()
rss_ref = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
lat_mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
lat_inv = 1.0 / torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
ref = ((mean - lat_mean) * lat_inv)[0].numpy()

# The machine's fp32 GEMM peak, measured now with the same threads (numpy's OpenBLAS).
a = np.random.default_rng(1).standard_normal((2048, 2048), dtype=np.float32)
a @ a
t0 = time.perf_counter()
for _ in range(3):
    a @ a
gemm = 3 * 2 * 2048 ** 3 / (time.perf_counter() - t0) / 1e9

# dfm: the same frames as a one-sample msgpack stream.
buf = io.BytesIO()
np.save(buf, frames)
stream = msgpack.packb({"__key__": "clip", "frames.npy": buf.getvalue()}, use_bin_type=True)
inp = os.path.join(work, "vae_in.mp")
with open(inp, "wb") as f:
    f.write(stream)
out = os.path.join(work, "vae_out.mp")
cmd = ["/usr/bin/time", "-f", "%e %M", "-o", os.path.join(work, "vae_time"),
       os.path.join(bindir, "dfm-vae-encode"), "-q", "--model", model, "--out-dtype", "f32",
       "-j", str(threads), "-o", out, inp]
subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
wall, rss_kb = open(os.path.join(work, "vae_time")).read().split()
# dfm's time includes process start and loading 508 MB of weights; take its own encode time too
# by running a 1-frame clip and subtracting? Simpler and honest: report both.
with open(out, "rb") as f:
    rec = next(iter(msgpack.Unpacker(f, raw=False, max_buffer_size=0)))
got = np.load(io.BytesIO(rec["latents.npy"]))
diff = float(np.abs(got - ref).max())

# dfm's load time alone: the same command on a 1-frame clip of the same size.
one = os.path.join(work, "vae_in1.mp")
buf = io.BytesIO()
np.save(buf, frames[:1])
with open(one, "wb") as f:
    f.write(msgpack.packb({"__key__": "one", "frames.npy": buf.getvalue()}, use_bin_type=True))
t0 = time.perf_counter()
subprocess.run(cmd[:5] + cmd[5:-1] + [one], check=True, stderr=subprocess.DEVNULL)
t_one = time.perf_counter() - t0
t_dfm = float(wall)
gf = flops[0] / 1e9
print(f"VAE encode, Wan 2.1 config (base_dim 96, random weights), {F}x{H}x{W}, {threads} threads")
print(f"  encoder conv work {gf:.1f} GFLOP; machine fp32 GEMM peak (numpy/OpenBLAS 2048^3) {gemm:.0f} GFLOP/s")
print(f"  {'':34s} {'seconds':>8s} {'GFLOP/s':>8s} {'of peak':>8s} {'peak MiB':>9s}")
print("  (GFLOP/s counts direct-convolution work; the Winograd path does fewer multiplications, so it can pass the GEMM peak)")
print(f"  {'diffusers (torch ' + torch.__version__.split('+')[0] + ', encode only)':34s} {t_ref:8.2f} {gf / t_ref:8.1f} {gf / t_ref / gemm:8.0%} {rss_ref:9.0f}")
print(f"  {'dfm-vae-encode (whole process)':34s} {t_dfm:8.2f} {gf / t_dfm:8.1f} {gf / t_dfm / gemm:8.0%} {int(rss_kb) / 1024:9.0f}")
print(f"  ratio {t_ref / t_dfm:.2f}x (dfm process includes start-up and weight loading; a 1-frame run takes {t_one:.2f} s)")
print(f"  max |dfm - diffusers| on normalized latents: {diff:.2e}")
