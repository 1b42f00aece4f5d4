#!/usr/bin/env python3
"""Tokenizer throughput for `make bench`: the same captions tokenized by Hugging Face's fast
tokenizer (tokenizers, Rust, one thread, encode() per caption as the Wan pipeline calls it) and by
`dfm-text-encode --tokens-only` (the whole program: reading a msgpack stream, tokenizing, writing
tokens.npy), in one run. The ids are compared too.

usage: bench_tokenizer.py WORKDIR BINDIR [TOKENIZER_DIR]"""
import io
import os
import random
import subprocess
import sys
import time

import msgpack
import numpy as np
from tokenizers import Tokenizer

work, bindir = sys.argv[1], sys.argv[2]
tokdir = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(__file__), "..", "tests",
                                                             "fixtures", "tokenizer", "nfkc")
rng = random.Random(0)
words = ("a the red fox cat dog runs through deep snow under bright blue sky slowly camera pans "
         "across city street at night neon lights reflect on wet asphalt crowd of people walking "
         "ocean waves crash onto rocky shore sunset golden hour close-up portrait smiling woman "
         "naïve café über résumé 東京 夜景 雪 狐 🦊 ✨ ｆｕｌｌｗｉｄｔｈ").split()
captions = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 60))) for _ in range(20000)]
nbytes = sum(len(c.encode()) for c in captions)

tok = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
t0 = time.perf_counter()
ref = [tok.encode(c).ids for c in captions]
t_hf = time.perf_counter() - t0

inp = os.path.join(work, "captions.mp")
with open(inp, "wb") as f:
    for i, c in enumerate(captions):
        f.write(msgpack.packb({"__key__": f"c{i:05d}", "txt": c.encode()}, use_bin_type=True))
out = os.path.join(work, "tokens.mp")
t0 = time.perf_counter()
subprocess.run([os.path.join(bindir, "dfm-text-encode"), "-q", "--tokenizer", tokdir, "--tokens-only",
                "--max-length", "100000", "-o", out, inp], check=True, stderr=subprocess.DEVNULL)
t_dfm = time.perf_counter() - t0
same = 0
with open(out, "rb") as f:
    for i, rec in enumerate(msgpack.Unpacker(f, raw=False, max_buffer_size=0)):
        same += np.load(io.BytesIO(rec["tokens.npy"])).tolist() == ref[i]
print(f"tokenizer: {len(captions)} captions, {nbytes / 1e6:.1f} MB, {sum(map(len, ref))} tokens")
print(f"  {'HF tokenizers (Rust, encode per caption)':44s} {nbytes / t_hf / 1e6:8.2f} MB/s  1.00x")
print(f"  {'dfm-text-encode --tokens-only (whole program)':44s} {nbytes / t_dfm / 1e6:8.2f} MB/s  {t_hf / t_dfm:.2f}x")
print(f"  identical ids: {same}/{len(captions)}")
