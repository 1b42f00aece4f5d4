#!/usr/bin/env python3
"""make_seeds.py — (re)write the seed inputs of the fuzz harnesses in tests/fuzz/corpus/NAME/.

Small, valid examples of every format and feature a harness covers, cut from the test fixtures
where they exist (a tokenizer with ~40 pieces, not 1000). Run from the repository root when a
harness or a format changes; `make test` only reads the files. Needs Python 3 (numpy is not
needed), the zstd and ffmpeg programs. Crash reproducers (tests/fuzz/crashes/) are not made here:
they are saved as libFuzzer wrote them, or by hand with a comment in their README.
"""
import io, json, os, struct, subprocess, sys, tarfile, tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(TOP, "tests", "fixtures")
OUT = os.path.join(TOP, "tests", "fuzz", "corpus")


def put(name, fname, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- npy ------------------------------------------------------------------------------------
def npy(descr, shape, data, version=1):
    shp = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shp)
    pre = 10 if version == 1 else 12
    total = (pre + len(h) + 1 + 63) // 64 * 64
    h = h + " " * (total - pre - len(h) - 1) + "\n"
    lenf = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + lenf + h.encode() + data


def seeds_npy():
    put("npy", "u1_frames", npy("|u1", (2, 2, 2, 3), bytes(range(24))))
    put("npy", "f4_text", npy("<f4", (2, 3), struct.pack("<6f", 0, 1, -1, 0.5, 1e30, -0.0)))
    put("npy", "f2_latents", npy("<f2", (1, 1, 2, 2), struct.pack("<4e", 1, 2, 3, 4)))
    put("npy", "i4", npy("<i4", (3,), struct.pack("<3i", 1, -2, 3)))
    put("npy", "i8_scalar", npy("<i8", (), struct.pack("<q", 7)))
    put("npy", "empty", npy("<f4", (0, 4), b""))
    put("npy", "v2", npy("|u1", (2,), b"ab", version=2))


# ---- sample stream ----------------------------------------------------------------------------
def mp_str(s):
    b = s.encode()
    return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b


def mp_bin(b):
    return b"\xc4" + bytes([len(b)]) + b if len(b) < 256 else b"\xc5" + struct.pack(">H", len(b)) + b


def mp_sample(key, fields):
    out = bytes([0x80 | (1 + len(fields))]) + mp_str("__key__") + mp_str(key)
    for k, v in fields:
        out += mp_str(k) + (mp_str(v) if isinstance(v, str) else mp_bin(v))
    return out


def tar_of(samples, fmt=tarfile.USTAR_FORMAT):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as t:
        for key, fields in samples:
            for k, v in fields:
                b = v.encode() if isinstance(v, str) else v
                ti = tarfile.TarInfo(f"{key}.{k}")
                ti.size, ti.mode, ti.mtime = len(b), 0o444, 0
                t.addfile(ti, io.BytesIO(b))
    return bio.getvalue()


def seeds_stream():
    frames = npy("|u1", (1, 2, 2, 3), bytes(range(12)))
    samples = [("clip_a", [("txt", "a red fox"), ("json", '{"source":"a.mp4","fps":24}'), ("frames.npy", frames)]),
               ("dir/img_b", [("txt", "x"), ("json", "{}")])]
    mp = b"".join(mp_sample(k, f) for k, f in samples)
    put("stream", "msgpack", mp)
    put("stream", "msgpack_strtxt", mp_sample("k", [("txt", "caption as str"), ("json", b'{"a":1}')]))
    t = tar_of(samples)
    put("stream", "tar", t)
    put("stream", "tar_pax", tar_of([("caf\u00e9/" + "n" * 120, [("txt", "long name")])], tarfile.PAX_FORMAT))
    put("stream", "tar_zst", subprocess.run(["zstd", "-q", "-c", "-19"], input=t, stdout=subprocess.PIPE,
                                            check=True).stdout)
    put("stream", "msgpack_zst", subprocess.run(["zstd", "-q", "-c"], input=mp, stdout=subprocess.PIPE,
                                                check=True).stdout)


# ---- safetensors ------------------------------------------------------------------------------
def st_file(tensors, meta=None):
    hdr, data = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def seeds_safetensors():
    put("safetensors", "fixture_small", open(os.path.join(FIX, "safetensors", "small.safetensors"), "rb").read())
    put("safetensors", "dtypes", st_file([
        ("a.f32", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
        ("b.bf16", "BF16", [3], b"\x80\x3f\x00\x40\x40\x40"),
        ("c.f16", "F16", [1, 1, 2], struct.pack("<2e", 1, -2)),
        ("d.u8", "U8", [4], b"\x01\x02\x03\x04"),
        ("e.i64", "I64", [1], struct.pack("<q", -5)),
        ("f.i32", "I32", [], struct.pack("<i", 9)),
        ("g.f64", "F64", [1], struct.pack("<d", 1.5)),
        ("h.empty", "F32", [0, 3], b""),
    ], {"format": "pt"}))
    put("safetensors", "odd_offset", st_file([("x", "U8", [1], b"\x07"), ("y", "F32", [2], struct.pack("<2f", 1, 2))]))


# ---- tokenizers -------------------------------------------------------------------------------
def small_json(path, keep=48):
    j = json.load(open(path))
    j["model"]["vocab"] = j["model"]["vocab"][:keep]
    j["added_tokens"] = [a for a in j.get("added_tokens", []) if a["id"] < keep][:8]
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


def seeds_tokenizer_json():
    tok = os.path.join(FIX, "tokenizer")
    put("tokenizer_json", "rules_small", small_json(os.path.join(tok, "rules", "tokenizer.json")))
    put("tokenizer_json", "identity_small", small_json(os.path.join(tok, "identity", "tokenizer.json")))
    for v in ("flags", "prepend", "regex", "ties"):
        put("tokenizer_json", "variant_" + v, open(os.path.join(tok, "variants", v + ".json"), "rb").read())
    put("tokenizer_json", "minimal", '{"model":{"type":"Unigram","vocab":[["a",-1.0],["<unk>",0.0]],"unk_id":1}}')
    put("tokenizer_json", "byte_fallback", json.dumps({
        "version": "1.0", "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": True,
                                    "vocab": [["<unk>", 0.0], ["<0x61>", -1.0], ["<0xC3>", -1.0], ["\u2581b", -2.0]]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
                          {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}]},
        "added_tokens": [{"content": "<x>", "special": True, "lstrip": True, "rstrip": True, "single_word": True,
                          "normalized": False}]}, ensure_ascii=False))


def pb_varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_fields(b):
    """(field, wire, raw bytes of the whole field) of a protobuf message."""
    i, out = 0, []
    while i < len(b):
        s = i
        key = 0
        shift = 0
        while True:
            c = b[i]; i += 1
            key |= (c & 0x7F) << shift; shift += 7
            if not c & 0x80:
                break
        f, w = key >> 3, key & 7
        if w == 0:
            while b[i] & 0x80:
                i += 1
            i += 1
        elif w == 1:
            i += 8
        elif w == 5:
            i += 4
        elif w == 2:
            n = 0; shift = 0
            while True:
                c = b[i]; i += 1
                n |= (c & 0x7F) << shift; shift += 7
                if not c & 0x80:
                    break
            i += n
        out.append((f, w, b[s:i]))
    return out


def small_spm(path, keep=40):
    fields, pieces, out = pb_fields(open(path, "rb").read()), 0, b""
    for f, w, raw in fields:
        if f == 1:
            pieces += 1
            if pieces > keep:
                continue
        out += raw
    return out


def seeds_spiece():
    tok = os.path.join(FIX, "tokenizer")
    for name in ("rules", "identity"):
        cfg = open(os.path.join(tok, name, "tokenizer_config.json"), "rb").read()
        model = small_spm(os.path.join(tok, name, "spiece.model"))
        put("spiece", name + "_small", struct.pack("<H", len(cfg)) + cfg + model)
        put("spiece", name + "_noconfig", b"\0\0" + model)
    piece = lambda s, score, ty: b"\x0a" + pb_varint(len(pb_piece(s, score, ty))) + pb_piece(s, score, ty)
    def pb_piece(s, score, ty):
        b = s.encode()
        return b"\x0a" + pb_varint(len(b)) + b + b"\x15" + struct.pack("<f", score) + b"\x18" + pb_varint(ty)
    trainer = b"\x12\x05\x18\x01\xc0\x02\x00"  # TrainerSpec: model_type (3) 1, unk_id (40) 0
    model = trainer + piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3) + \
        piece("\u2581a", -1, 1) + piece("b", -2, 1) + piece("<u>", 0, 4)
    cfg = b'{"extra_ids": 3, "eos_token": {"content": "</s>"}, "additional_special_tokens": ["<x>"]}'
    put("spiece", "handmade", struct.pack("<H", len(cfg)) + cfg + model)


# ---- captions ---------------------------------------------------------------------------------
def seeds_captions():
    kinds = {0: "txt", 1: "json", 2: "meta", 3: "captions", 4: "internvl", 5: "manifest"}
    ex = {
        0: "  a red   fox\n in snow  ",
        1: '{"caption": "a fox", "text": "alt"}',
        2: '[{"file_name": "clip_sample1.mp4", "caption": "from meta"}, {"filename": "other.png", "text": "t"}]',
        3: '{"clip_sample1.mp4": ["one", "two"], "other.png": ["x"]}',
        4: '{"file_name": "clip_sample1.mp4", "internvl": "ivl caption"}\n{"file_name": "other.png", "usr": "u"}\n',
        5: '{"file_name": "sub/clip_sample1.mp4", "caption": "m"}\n{"path": "other.png", "text": "t"}\nnot json\n',
    }
    for k, text in ex.items():
        for field in (0, 1):
            put("captions", f"{kinds[k]}_{'text' if field else 'caption'}", bytes([k, field]) + text.encode())
    put("captions", "meta_items", bytes([2, 0]) + b'{"items": [{"file_name": "clip_sample1.mp4", "caption": "c"}]}')
    put("captions", "bom_json", bytes([1, 0]) + b"\xef\xbb\xbf" + b'{"caption": "bom"}')


# ---- images -----------------------------------------------------------------------------------
def seeds_image():
    media = os.path.join(FIX, "media")
    for f in ("alpha.png", "anim.webp", "cmyk.jpg", "grey.jpg", "grey16.png", "halves.bmp",
              "halves_lossless.webp", "halves_lossy.webp", "orient6.jpg", "pal_trns.png", "rgb16.png",
              "stripes_odd.webp"):
        put("image", f, open(os.path.join(media, f), "rb").read())


# ---- model configs ----------------------------------------------------------------------------
def seeds_model_config():
    vae = open(os.path.join(FIX, "wan_vae", "tiny", "config.json"), "rb").read()
    umt5 = open(os.path.join(FIX, "umt5", "tiny", "config.json"), "rb").read()
    put("model_config", "vae_tiny", b"\x01" + vae)          # with the tiny VAE weights: loads
    put("model_config", "vae_tiny_bf16", b"\x05" + vae)
    put("model_config", "vae_tiny_noweights", b"\x00" + vae)
    put("model_config", "umt5_tiny", b"\x02" + umt5)        # with the tiny UMT5 weights: loads
    put("model_config", "umt5_tiny_mapped", b"\x0a" + umt5)
    put("model_config", "umt5_defaults", b"\x00" + b'{"architectures": ["UMT5EncoderModel"]}')
    put("model_config", "vae_defaults", b"\x00" + b'{"_class_name": "AutoencoderKLWan"}')
    put("model_config", "vae_z16", b"\x00" + open(os.path.join(FIX, "wan_vae", "z16", "config.json"), "rb").read())


if __name__ == "__main__":
    for fn in (seeds_npy, seeds_stream, seeds_safetensors, seeds_tokenizer_json, seeds_spiece, seeds_captions,
               seeds_image, seeds_model_config):
        fn()
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"make_seeds: {total} bytes in {OUT}", file=sys.stderr)
