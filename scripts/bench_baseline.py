#!/usr/bin/env python3
"""The NeMo-way baseline for `make bench`: what NeMo AutoModel's preprocessing does before the
VAE.

Images (multi_tier_bucketing.py resize_and_crop): PIL open -> RGB -> nearest-aspect bucket ->
LANCZOS resize to cover -> centre crop -> numpy uint8, in a multiprocessing pool of one worker
per core (os.cpu_count()), as a user would run it; `images-1` is the same in one process.
The fourth number printed for images is the peak RSS summed over the pool's processes (KiB).
Videos (base_video.py load_video_frames): OpenCV VideoCapture, every frame, BGR->RGB, cv2.resize
to cover with INTER_LANCZOS4 -> centre crop -> numpy.

usage: bench_baseline.py images DIR | images-1 DIR | videos DIR
prints "items frames seconds [peak_kib_summed]"
"""
import math
import multiprocessing
import os
import resource
import sys
import time

import numpy as np

RATIOS = [(1, 2), (9, 16), (2, 3), (3, 4), (4, 5), (1, 1), (5, 4), (4, 3), (3, 2), (16, 10),
          (5, 3), (16, 9), (2, 1), (21, 9)]


def buckets(max_pixels=512 * 512, q=16):
    out = []
    for w, h in RATIOS:
        r = w / h
        hh = int(math.sqrt(max_pixels / r))
        hh = round(hh / q) * q
        ww = round(int(hh * r) / q) * q
        while ww * hh > max_pixels:
            if ww >= hh:
                ww -= q
            else:
                hh -= q
        if ww >= q and hh >= q and (ww, hh) not in out:
            out.append((ww, hh))
    return sorted(out, key=lambda b: b[0] / b[1])


BUCKETS = buckets()


def pick(w, h):
    ar = w / h
    return min(BUCKETS, key=lambda b: abs(b[0] / b[1] - ar))


def one_image(f):
    from PIL import Image
    img = Image.open(f).convert("RGB")
    tw, th = pick(*img.size)
    s = max(tw / img.width, th / img.height)
    nw, nh = max(tw, int(img.width * s)), max(th, int(img.height * s))
    img = img.resize((nw, nh), Image.LANCZOS)
    left, top = (nw - tw) // 2, (nh - th) // 2
    arr = np.asarray(img.crop((left, top, left + tw, top + th)))
    assert arr.shape == (th, tw, 3)
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def image_files(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".jpg"))


def images1(d):
    files = image_files(d)
    t0 = time.perf_counter()
    for f in files:
        one_image(f)
    return len(files), len(files), time.perf_counter() - t0


def images(d):
    files = image_files(d)
    t0 = time.perf_counter()
    peaks = {}
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for pid, kb in pool.imap_unordered(one_image, files, chunksize=4):
            peaks[pid] = max(peaks.get(pid, 0), kb)
    t = time.perf_counter() - t0
    mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return len(files), len(files), t, mine + sum(peaks.values())


def videos(d):
    import cv2
    cv2.setNumThreads(1)
    files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".mp4"))
    t0 = time.perf_counter()
    frames = 0
    for f in files:
        cap = cv2.VideoCapture(f)
        out = []
        while True:
            ok, fr = cap.read()
            if not ok:
                break
            fr = cv2.cvtColor(fr, cv2.COLOR_BGR2RGB)
            h, w = fr.shape[:2]
            tw, th = pick(w, h)
            s = max(tw / w, th / h)
            nw, nh = max(tw, int(w * s)), max(th, int(h * s))
            fr = cv2.resize(fr, (nw, nh), interpolation=cv2.INTER_LANCZOS4)
            left, top = (nw - tw) // 2, (nh - th) // 2
            out.append(fr[top:top + th, left:left + tw])
        cap.release()
        arr = np.stack(out)
        frames += arr.shape[0]
    return len(files), frames, time.perf_counter() - t0


if __name__ == "__main__":
    kind, d = sys.argv[1], sys.argv[2]
    if kind == "images":
        n, f, t, kb = images(d)
        print(n, f, f"{t:.3f}", kb)
    else:
        n, f, t = images1(d) if kind == "images-1" else videos(d)
        print(n, f, f"{t:.3f}")
