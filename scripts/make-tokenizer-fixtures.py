#!/usr/bin/env python3
"""make-tokenizer-fixtures.py: regenerate tests/fixtures/tokenizer/ (and, with --unicode-tables,
lib/text/unicode_tables.h).

Trains three small SentencePiece Unigram models on generated multilingual text, converts each to
the fast-tokenizer `tokenizer.json` a real T5/UMT5 repository carries (transformers' T5Converter:
the vocabulary plus `<extra_id_N>` sentinels in reverse order, Precompiled + Strip + Replace
normalizer, Metaspace, TemplateProcessing `$A </s>`, the special tokens as added tokens), and
records the reference ids of the Hugging Face fast tokenizer (tokenizers.Tokenizer.from_file on
that tokenizer.json, add_special_tokens=True, no truncation) for a corpus of generated strings.

  corpus.jsonl           one string a line: {"text": "..."} ({"hex": "..."} when it holds NUL)
  <model>/tokenizer.json, spiece.model, tokenizer_config.json
  <model>/ids.jsonl      a line per corpus string: [ids...] from tokenizer.json, or
                         {"ids": [...], "spm": [...]} where the spiece.model path (T5Converter's
                         canonical tokenizer.json) gives other ids than the stored tokenizer.json
  graphemes.jsonl        {"text": "...", "b": [byte offsets of the inner cluster boundaries]} from
                         Rust's unicode-segmentation (the crate tokenizers uses), for
                         tests of lib/text/grapheme.c
  variants/<name>.json   hand-written tokenizer.json files over a 37-piece vocabulary, for what T5
                         files do not use: score ties, duplicate pieces, byte fallback, added-token
                         flags (lstrip, rstrip, single_word, normalized), WhitespaceSplit, prepend
                         schemes first/never, Prepend, literal and regex Replace, a prefix template
  variants/texts.jsonl   their test strings, one JSON string a line
  variants/<name>.ids.jsonl  {"ids", "trunc5": ids with HF truncation at max_length 5} a line

Models:
  nfkc      vocab 2000, nmt_nfkc charsmap (the T5/UMT5 default), 100 sentinels (extra_ids 100)
  rules     vocab 1000, a custom normalization_rule_tsv (multi-code-point keys, deletions,
            expansions, space mappings, rules on the first code point of short grapheme clusters
            so that HF's whole-cluster replacement shows), a user-defined symbol and a control
            symbol, 7 sentinels (extra_ids 7, as UMT5's config names its own count); its
            tokenizer.json is rewritten into the older layout (Replace " {2,}" -> " ", no Strip,
            Metaspace add_prefix_space) that older T5 files have, so "spm" ids differ on some lines
  identity  vocab 800, identity normalization (no Precompiled step), no tokenizer_config extra_ids
            (default 100)

Checks made here (the script stops if one fails): HF truncation at 512 equals the first 511
content ids then </s>; the empty string is [</s>]; the corpus holds at least 2000 strings and some
over 512 tokens. Printed: how many corpus strings transformers 5's T5Tokenizer built from
spiece.model alone (no tokenizer.json: code-built WhitespaceSplit pipeline) tokenizes differently.

--unicode-tables: probe the Grapheme_Cluster_Break, InCB=Extend and InCB=Linker value of every
code point from unicode-segmentation's behaviour (pip package unicode-segmentation-rs, which
bundles the same crate version, 1.13.3, as the tokenizers 0.23 wheel; the probed values were
checked once against that crate's tables.rs: identical), add the \\w class, and write
lib/text/unicode_tables.h.

Needs: sentencepiece, tokenizers, transformers, protobuf, unicode-segmentation-rs, regex (PyPI).
"""
import base64
import json
import os
import random
import shutil
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

# ---------------------------------------------------------------------------------------------
# Grapheme tables by probing unicode-segmentation

CATS = ["Any", "CR", "LF", "Control", "Extend", "ZWJ", "SpacingMark", "Prepend", "L", "V", "T",
        "LV", "LVT", "RI", "ExtPict", "InCB_Consonant"]


def probe_graphemes():
    import unicode_segmentation_rs as us

    cps = [c for c in range(0x110000) if not (0xD800 <= c <= 0xDFFF)]
    EXT, ZWJ, A = "\u0301", "\u200d", "a"
    L, V, T, LV = "\u1100", "\u1161", "\u11a8", "\uac00"
    RI, EP, CONS, LINK = "\U0001F1E6", "\U0001F600", "\u0915", "\u094d"
    # name: (prefix, suffix, position of the probed boundary relative to the start of the probe)
    tests = {
        "t1": ("", EXT, 1), "t2": (A, "", 1), "t3": ("", A, 1), "t4": (EP + ZWJ, "", 2),
        "t5": ("", V, 1), "t6": ("", T, 1), "t7": ("", L, 1), "t8": ("", RI, 1),
        "t9": ("", LINK + CONS, 2), "t10": (CONS + LINK, CONS, 3), "t11": (CONS, CONS, 2),
        "t13": (EP, ZWJ + EP, 3), "t14": (LV, "", 1),
    }
    res = {}
    for name, (pre, suf, at) in tests.items():
        strs = [pre + chr(c) + suf for c in cps]
        big = "\n".join(strs)  # LF breaks on both sides: probes do not interact
        bounds = set()
        pos = 0
        for g in us.graphemes(big, True):
            pos += len(g)
            bounds.add(pos)
        out = bytearray(len(cps))
        start = 0
        for i, s in enumerate(strs):
            out[i] = (start + at) in bounds
            start += len(s) + 1
        res[name] = out
        print(f"  probe {name} done", file=sys.stderr)
    props = {}
    for i, c in enumerate(cps):
        r = {k: v[i] for k, v in res.items()}
        if c == 0x0D:
            k = "CR"
        elif c == 0x0A:
            k = "LF"
        elif r["t1"]:
            k = "Control"
        elif not r["t2"]:
            k = "ZWJ" if c == 0x200D else ("Extend" if not r["t13"] else "SpacingMark")
        elif not r["t3"]:
            k = "Prepend"
        elif not r["t7"]:
            k = "L"
        elif not r["t14"]:
            k = "V" if not r["t5"] else "T"
        elif not r["t5"] and not r["t6"]:
            k = "LV"
        elif not r["t6"]:
            k = "LVT"
        elif not r["t8"]:
            k = "RI"
        elif not r["t4"]:
            k = "ExtPict"
        elif not r["t9"]:
            k = "InCB_Consonant"
        else:
            k = "Any"
        linker = (not r["t11"]) and k in ("Extend", "ZWJ")
        incb_ext = (not r["t10"]) and not linker and k in ("Extend", "ZWJ", "SpacingMark")
        props[c] = (CATS.index(k), incb_ext, linker)
    return props


def word_ranges():
    """Code points of the regex class \\w as Rust's regex crate defines it (Unicode TR18:
    Alphabetic, M, Nd, Pc, Join_Control), taken from the `regex` module, which uses the same
    definition. Used for added tokens with single_word set."""
    import regex

    w = regex.compile(r"\w")
    ranges = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF or not w.match(chr(c)):
            continue
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return ranges


def write_unicode_tables(path):
    props = probe_graphemes()
    ranges = []
    prev = None
    for c in range(0x110000):
        v = props.get(c, (0, False, False))
        if ranges and v == prev and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        elif v != (0, False, False):
            ranges.append([c, c, v])
        prev = v
    lines = [
        "/* unicode_tables.h — GENERATED by scripts/make-tokenizer-fixtures.py --unicode-tables;",
        " * do not edit. Included by grapheme.c only.",
        " * dfm_gb_ranges: Grapheme_Cluster_Break (with Extended_Pictographic and InCB=Consonant folded",
        " * in, as Rust's unicode-segmentation does), InCB=Extend and InCB=Linker of every code point,",
        " * probed from unicode-segmentation (the crate the tokenizers wheel uses). Ranges not listed",
        " * are Any with no InCB flag.",
        " * dfm_word_ranges: the regex class \\w (Alphabetic, M, Nd, Pc, Join_Control). */",
        "enum {" + ", ".join(f"DFM_GB_{k.upper()}" for k in CATS) + "};",
        "#define DFM_GB_INCB_EXTEND 0x10",
        "#define DFM_GB_INCB_LINKER 0x20",
        "static const struct { uint32_t lo, hi; uint8_t v; } dfm_gb_ranges[] = {",
    ]
    row = []
    for lo, hi, (cat, ie, lk) in ranges:
        v = f"DFM_GB_{CATS[cat].upper()}"
        if ie:
            v += "|DFM_GB_INCB_EXTEND"
        if lk:
            v += "|DFM_GB_INCB_LINKER"
        row.append(f"{{0x{lo:X},0x{hi:X},{v}}}")
        if len(row) == 3:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("};")
    lines.append("static const struct { uint32_t lo, hi; } dfm_word_ranges[] = {")
    row = []
    for lo, hi in word_ranges():
        row.append(f"{{0x{lo:X},0x{hi:X}}}")
        if len(row) == 6:
            lines.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        lines.append("    " + ", ".join(row) + ",")
    lines.append("};")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}: {len(ranges)} ranges", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Generated text

WORDS_EN = ("a photo of the cat dog sitting on table under bright blue sky with red car driving "
            "through city street at night cinematic lighting high quality detailed portrait woman "
            "man child walking running beach ocean waves sunset mountains snow forest river slow "
            "motion camera pans left right close up shot video of young old people dancing in rain "
            "beautiful landscape painting oil style anime realistic 4k 8k HDR").split()
WORDS_FR = "le chat était très fatigué après une journée où il a mangé des crêpes à la crème brûlée garçon façade naïve".split()
WORDS_DE = "der große Hund läuft über die Straße während es draußen schön ist Mädchen Größe Übung".split()
WORDS_ES = "el niño pequeño está jugando en el jardín con su mamá mañana árbol canción".split()
WORDS_RU = "большая собака бежит по улице города ночью красивый пейзаж снег зимой".split()
WORDS_EL = "η γάτα κάθεται στο τραπέζι και κοιτάζει έξω από το παράθυρο".split()
WORDS_AR = "القطة تجلس على الطاولة في المساء الجميل".split()
WORDS_HE = "החתול יושב על השולחן בערב יפה".split()
WORDS_HI = "एक बिल्ली मेज़ पर बैठी है और खिड़की से बाहर देख रही है क्षत्रिय".split()
WORDS_TH = "แมวนั่งอยู่บนโต๊ะและมองออกไปนอกหน้าต่าง".split()
ZH = "一只猫坐在桌子上看着窗外的风景城市夜晚灯光下雨天空蓝色山脉森林河流海浪日落高质量电影镜头慢动作"
JA = "猫がテーブルの上に座って窓の外を見ているカメラはゆっくりと左に動くｶﾞｷﾞｸﾞｹﾞｺﾞ"
KO = "고양이가테이블위에앉아서창밖을보고있다아름다운풍경"
EMOJI = ["😀", "🐱", "🚗", "🌅", "❤️", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "🇺🇸🇬🇧", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
         "👩🏿‍🚀", "🧑‍🤝‍🧑", "✌🏻", "🙂‍↔️", "☺", "©", "™"]
COMBINING = [chr(c) for c in list(range(0x300, 0x370)) + [0x1AB0, 0x1DC0, 0x20D0, 0x20E3, 0xFE20]]
FULLWIDTH = "ＡＢＣＤＥＦａｂｃｄｅｆ０１２３４５６７８９！＂＃＄％＆（）＊＋，－．／：；＜＝＞？＠［＼］＾＿｀｛｜｝～　"
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\u00a0", "\u2002", "\u2003", "\u2009", "\u200a",
          "\u3000", "\u0085", "\u2028", "\u2029", "\u202f", "\u205f", "\u1680", "\u180e", "\u200b",
          "\ufeff", "\x0b", "\x0c", "\x1c"]
CONTROLS = [chr(c) for c in list(range(1, 32)) + [0x7F] + list(range(0x80, 0xA0))] + ["\u200e", "\u200f", "\u2066", "\u00ad", "\u061c"]
ODD = ["\ufffd", "\uffff", "\U0010FFFF", "\ue000", "\U000F0000", "\u2581", "▁▁", "\u0378", "\U000E0001",
       "\u0600", "\u0601", "\U000110BD", "\u0d4e", "\u0903", "\u093f", "ᄀ", "ᅡ", "ᆨ", "각", "가", "각",
       "\U0001F1E6", "\U0001F3FB", "\u200d", "\u200c", "ﬁ", "ﬀ", "℃", "№", "㍿", "Ⅻ", "①", "½", "ｶﾞ", "ﾞ", "x²", "ǅ", "ẞ", "İ", "ß"]

ALL_WORDS = [WORDS_EN, WORDS_FR, WORDS_DE, WORDS_ES, WORDS_RU, WORDS_EL, WORDS_AR, WORDS_HE, WORDS_HI]


def cjk_run(r, n):
    src = r.choice([ZH, JA, KO])
    i = r.randrange(len(src))
    return (src * 3)[i:i + n]


def sentence(r, n=None):
    n = n or r.randint(3, 14)
    parts = []
    for _ in range(n):
        k = r.random()
        if k < 0.55:
            parts.append(r.choice(WORDS_EN))
        elif k < 0.80:
            parts.append(r.choice(r.choice(ALL_WORDS[1:])))
        elif k < 0.90:
            parts.append(cjk_run(r, r.randint(1, 6)))
        elif k < 0.93:
            parts.append(r.choice(WORDS_TH))
        elif k < 0.96:
            parts.append(str(r.randint(0, 10 ** r.randint(1, 6))))
        else:
            parts.append(r.choice(",.!?;:-()\"'"))
    s = " ".join(parts)
    if r.random() < 0.5:
        s = s[0].upper() + s[1:]
    return s


def training_text():
    r = random.Random(1234)
    lines = []
    for _ in range(12000):
        s = sentence(r)
        if r.random() < 0.1:
            s += " " + r.choice(EMOJI)
        if r.random() < 0.05:
            s += " " + "".join(r.choice(FULLWIDTH) for _ in range(r.randint(1, 5)))
        lines.append(s)
    return "\n".join(lines) + "\n"


def corpus_strings(extra_tokens):
    r = random.Random(99)
    out = []
    add = out.append
    # fixed edge cases
    for s in ["", " ", "  ", "\t", "\n", "\r\n", "a", "A", "▁", "▁a", "a▁", " a", "a ", " a ", "a  b",
              "a   b", "a \t b", "a\nb", "a\r\nb", "\u3000", "a\u3000b", "hello world", "Hello World!",
              "</s>", "<pad>", "<unk>", "<s>", "<extra_id_0>", "<extra_id_99>", "<extra_id_100>",
              "<extra_id_", "<extra_id_0", "extra_id_0>", "</s></s>", " </s> ", "a</s>b", "a </s> b",
              "<extra_id_0><extra_id_1>", "x<extra_id_0>y", "<<extra_id_0>>", "</s><pad><unk>",
              "<extra_id_6> <extra_id_7>", "<sep>", "a<sep>b", " <sep> ", "<ctl>", "<ctl><sep>",
              "<extra_id_0>\u0301", "\u0301<extra_id_0>", "   </s>   ", "</s>\n", "\t<pad>\t",
              "e\u0301", "A\u0301", "Q\u0301", "Q\u0301\u0301", "q\u0301", "ﬁ\u0301", "\u0600a", "\u0600",
              "a\u200d", "a\u200db", "\r\n\u0301", "\u0301", "\u0301\u0301a", " \u0301", "\t\u0301",
              "1\u20e3", "#\ufe0f\u20e3", "\U0001F1E6\U0001F1E7\U0001F1E8", "가", "각", "각",
              "क्ष", "क्\u200dष", "ক্ষ", "\u0915\u093c", "\u0958", "ｶﾞ", "ﾊﾟ", "Ａ\u0301", "ﬁ", "ﬀﬁ"]:
        add(s)
    for t in extra_tokens:
        add(t)
        add("x " + t + " y")
    # ASCII prompts
    for _ in range(300):
        add(" ".join(r.choice(WORDS_EN) for _ in range(r.randint(1, 20))))
    # multilingual sentences
    for _ in range(400):
        add(sentence(r))
    # accents, precomposed and decomposed, stacked marks
    import unicodedata
    for _ in range(150):
        s = sentence(r, r.randint(1, 6))
        form = r.choice(["NFC", "NFD", "NFKD", "NFKC"])
        s = unicodedata.normalize(form, s)
        if r.random() < 0.5:
            i = r.randrange(len(s) + 1)
            s = s[:i] + "".join(r.choice(COMBINING) for _ in range(r.randint(1, 4))) + s[i:]
        add(s)
    # CJK
    for _ in range(150):
        add("".join(cjk_run(r, r.randint(1, 12)) + (r.choice(["", " ", "、", "。", "！", "，"]))
                    for _ in range(r.randint(1, 4))))
    # emoji
    for _ in range(150):
        add("".join(r.choice(EMOJI + [" ", "a", "\u200d", "\ufe0f", "\U0001F3FB", "\U0001F1E6"])
                    for _ in range(r.randint(1, 8))))
    # full-width, odd and control characters, spaces
    pools = [FULLWIDTH, ODD, CONTROLS, SPACES, COMBINING]
    for _ in range(350):
        n = r.randint(1, 10)
        parts = []
        for _ in range(n):
            k = r.random()
            if k < 0.4:
                parts.append(r.choice(r.choice(pools)))
            elif k < 0.7:
                parts.append(r.choice(WORDS_EN))
            elif k < 0.8:
                parts.append(r.choice(EMOJI))
            else:
                parts.append(r.choice(r.choice(ALL_WORDS)))
        add("".join(parts))
    # whitespace runs
    for _ in range(150):
        parts = []
        for _ in range(r.randint(1, 6)):
            parts.append(r.choice(SPACES) * r.randint(1, 4))
            if r.random() < 0.7:
                parts.append(r.choice(WORDS_EN))
        add("".join(parts))
    # random code points (all planes, no surrogates)
    for _ in range(200):
        s = []
        for _ in range(r.randint(1, 8)):
            k = r.random()
            if k < 0.3:
                c = r.randrange(0x20, 0x800)
            elif k < 0.8:
                c = r.randrange(0x800, 0x10000)
            else:
                c = r.randrange(0x10000, 0x110000)
            if 0xD800 <= c <= 0xDFFF:
                c = 0x41
            s.append(chr(c))
        add("".join(s))
    # added tokens mixed into text
    for _ in range(120):
        parts = []
        for _ in range(r.randint(2, 6)):
            if r.random() < 0.4:
                parts.append(r.choice(extra_tokens))
            else:
                parts.append(r.choice(WORDS_EN))
        add(r.choice(["", " "]).join(parts))
    # NUL
    for s in ["\x00", "a\x00b", "\x00</s>\x00", " \x00 "]:
        add(s)
    # long strings: > 512 tokens with every model
    for i in range(9):
        if i % 3 == 0:
            add(" ".join(sentence(r) for _ in range(r.randint(70, 90))))
        elif i % 3 == 1:
            add("".join(cjk_run(r, 12) for _ in range(r.randint(45, 60))))
        else:
            add(" ".join(r.choice(EMOJI + WORDS_EN + list(FULLWIDTH)) for _ in range(r.randint(300, 400))))
    add("a " * 600)
    add("<extra_id_0>" * 600)
    return out


def grapheme_strings():
    r = random.Random(7)
    pool = (list("aZ09 .") + ["\r", "\n", "\t", "\x01", "\x7f", "\x85", "\u00ad"] + COMBINING[::7] +
            ["\u200d", "\u200c", "\ufe0f", "\u0903", "\u093f", "\u0600", "\u0601", "\U000110BD", "\u0d4e",
             "ᄀ", "ᅡ", "ᆨ", "가", "각", "\U0001F1E6", "\U0001F1E7", "\U0001F3FB", "😀", "👨", "👩",
             "❤", "©", "\u0915", "\u0937", "\u094d", "\u093c", "\u0995", "\u09cd", "\u0bcd", "\u0b95",
             "\u0e01", "\u0e33", "\u0e48", "\u1780", "\u17d2", "\u1000", "\u1039", "\U000E0067",
             "\U000E007F", "\U0001F3F4", "中", "Ａ", "ｶ", "ﾞ", "\U00011F00", "\U00011F42",
             "\U000113B8", "\U00016D40", "\uFFFF", "\U0010FFFF"])
    out = []
    for _ in range(1000):
        out.append("".join(r.choice(pool) for _ in range(r.randint(1, 8))))
    return out


# ---------------------------------------------------------------------------------------------
# Models

RULES_TSV = [
    # source code points (hex, space separated) -> target (may be empty = deletion)
    ("41 301", "C1"), ("45 301", "C9"), ("65 301", "E9"), ("61 308", "E4"), ("6F 308", "F6"),
    ("51", "71"),            # Q -> q: "Q\u0301" is one cluster of 3 bytes, replaced whole by "q"
    ("FB01", "66 69"), ("FB00", "66 66"), ("2122", "54 4D"), ("2460", "31"),
    ("200B", ""), ("AD", ""), ("FEFF", ""), ("7F", ""), ("1", ""),
    ("3000", "20"), ("A0", "20"), ("9", "20"), ("A", "20"), ("D A", "20"), ("D", "20"),
    ("2003", "20 20"),       # expansion into two spaces
    ("600", "23"),           # Prepend: "\u0600a" is one cluster
    ("200D", "2B"),          # ZWJ -> "+": only where it is a cluster of its own or in a long one
    ("1F1E6", "41"),         # regional indicator A -> "A"
    ("1100 1161", "AC00"),   # L+V (6 bytes: never matched whole, per code point never either)
    ("FF21", "41"), ("FF41", "61"), ("FF10", "30"), ("FF01", "21"),
    ("FF76 FF9E", "30AC"), ("FF76", "30AB"), ("FF9E", "3099"),
    ("2581", "5F"),          # the metaspace character itself
    ("7E", "7E 7E"),
]

MODELS = [
    dict(name="nfkc", vocab=2000, rule="nmt_nfkc", extra_ids=100, config_extra_ids=True, legacy=False,
         user=[], control=[]),
    dict(name="rules", vocab=1000, rule=None, extra_ids=7, config_extra_ids=True, legacy=True,
         user=["<sep>"], control=["<ctl>"]),
    dict(name="identity", vocab=800, rule="identity", extra_ids=100, config_extra_ids=False,
         legacy=False, user=[], control=[]),
]


def train(spec, text_path, tmp):
    import sentencepiece as spm

    prefix = os.path.join(tmp, spec["name"])
    kw = dict(input=text_path, model_prefix=prefix, vocab_size=spec["vocab"], model_type="unigram",
              pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=False, character_coverage=0.9995,
              minloglevel=2, num_threads=1, seed_sentencepiece_size=200000, input_sentence_size=0,
              shuffle_input_sentence=False, hard_vocab_limit=True)
    if spec["rule"]:
        kw["normalization_rule_name"] = spec["rule"]
    else:
        tsv = os.path.join(tmp, spec["name"] + ".tsv")
        with open(tsv, "w") as f:
            for a, b in RULES_TSV:
                f.write(f"{a}\t{b}\n")
        kw["normalization_rule_tsv"] = tsv
    if spec["user"]:
        kw["user_defined_symbols"] = spec["user"]
    if spec["control"]:
        kw["control_symbols"] = spec["control"]
    spm.SentencePieceTrainer.train(**kw)
    # the trainer records its temporary paths: clear them so that the file is reproducible
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    with open(prefix + ".model", "rb") as f:
        m.ParseFromString(f.read())
    del m.trainer_spec.input[:]
    m.trainer_spec.model_prefix = spec["name"]
    if m.normalizer_spec.normalization_rule_tsv:
        m.normalizer_spec.normalization_rule_tsv = spec["name"] + ".tsv"
    with open(prefix + ".model", "wb") as f:
        f.write(m.SerializeToString())
    return prefix + ".model"


class SlowShim:
    """What T5Converter reads from a slow T5Tokenizer."""

    def __init__(self, vocab_file, extra_ids):
        import sentencepiece as spm

        self.vocab_file = vocab_file
        self._extra_ids = extra_ids
        self.sp = spm.SentencePieceProcessor(model_file=vocab_file)
        self.legacy = True

    def convert_tokens_to_ids(self, tok):
        n = self.sp.get_piece_size()
        if tok.startswith("<extra_id_"):
            return n + self._extra_ids - 1 - int(tok[10:-1])
        return self.sp.piece_to_id(tok)


def convert(model_file, extra_ids):
    """The canonical tokenizer.json of a T5 repository, as T5Converter + T5TokenizerFast make it."""
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import T5Converter

    tok = T5Converter(SlowShim(model_file, extra_ids)).converted()
    special = ["</s>", "<unk>", "<pad>"] + [f"<extra_id_{i}>" for i in range(extra_ids)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    return tok


def legacy_json(js):
    """Rewrite a tokenizer.json into the older SpmConverter layout."""
    d = json.loads(js)
    norms = d["normalizer"]["normalizers"]
    norms = [n for n in norms if n["type"] == "Precompiled"]
    norms.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
    d["normalizer"] = {"type": "Sequence", "normalizers": norms}
    d["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    d["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def spm_only_transformers(model_file, extra_ids, texts, tmp):
    """ids from transformers 5 T5Tokenizer given spiece.model alone (no tokenizer.json)."""
    try:
        from transformers import T5Tokenizer

        d = os.path.join(tmp, "spm-only")
        os.makedirs(d, exist_ok=True)
        shutil.copy(model_file, os.path.join(d, "spiece.model"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "T5Tokenizer", "extra_ids": extra_ids}, f)
        t = T5Tokenizer.from_pretrained(d)
        return [t(s, add_special_tokens=True)["input_ids"] for s in texts]
    except Exception as e:  # report, do not fail: this is only a comparison
        print(f"  (transformers spiece.model-only path failed: {e})", file=sys.stderr)
        return None


# ---------------------------------------------------------------------------------------------
# Hand-written variants: pipeline features T5/UMT5 files do not use, each checked against HF.

TINY_VOCAB = [
    ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -4.0), ("\u2581a", -2.0), ("a", -2.5),
    ("b", -1.0), ("\u2581ab", -3.0),  # "▁a" + "b" ties with "▁ab": HF keeps the first writer
    ("ab", -3.5), ("c", -3.0), ("\u2581c", -3.25), ("\u2581the", -1.5), ("the", -2.75), ("\u2581cat", -1.75),
    ("cat", -2.25), ("s", -2.0), ("\u2581dog", -1.75), ("dog", -2.5), ("x", -5.0), ("\u2581x", -5.5),
    ("y", -4.0), ("\u00e9", -3.0), ("\u4e2d", -3.0), ("\u2581\u4e2d", -3.5), ("a", -0.5),  # duplicate "a"
    ("<0x41>", -6.0), ("<0x42>", -6.0), ("<0xC3>", -6.0), ("<0xA9>", -6.0), ("<0xE2>", -6.0), ("<0x96>", -6.0),
    ("<0x81>", -6.0), ("\u2581\u2581", -4.5), ("aB", -2.0), ("[X]", -1.0), ("\u2581[X]", -1.0), ("e", -3.0),
]


def added(content, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False):
    return {"id": 0, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def template(prefix, suffix):
    items = [{"SpecialToken": {"id": t, "type_id": 0}} for t in prefix]
    items.append({"Sequence": {"id": "A", "type_id": 0}})
    items += [{"SpecialToken": {"id": t, "type_id": 0}} for t in suffix]
    ids = {t: [i for i, (p, _) in enumerate(TINY_VOCAB) if p == t][-1:] for t in prefix + suffix}
    return {"type": "TemplateProcessing", "single": items, "pair": items,
            "special_tokens": {t: {"id": t, "ids": v, "tokens": [t]} for t, v in ids.items()}}


def metaspace(scheme="always", split=True):
    return {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}


VARIANTS = {
    # ties, duplicate pieces, unknown runs
    "ties": dict(normalizer=None, pre_tokenizer=metaspace(), post_processor=template([], ["</s>"]),
                 added=[added("</s>")], byte_fallback=False),
    # added-token flags, normalized added tokens, WhitespaceSplit + Metaspace "first", Strip both,
    # literal Replace, a template with a prefix token
    "flags": dict(normalizer={"type": "Sequence", "normalizers": [
                      {"type": "Strip", "strip_left": True, "strip_right": True},
                      {"type": "Replace", "pattern": {"String": "A"}, "content": "a"}]},
                  pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
                                                                       metaspace("first")]},
                  post_processor=template(["<pad>"], ["</s>"]),
                  added=[added("</s>"), added("[X]", lstrip=True, rstrip=True),
                         added("cat", special=False, single_word=True),
                         added("dog", special=False, normalized=True),
                         added("AB", special=False, normalized=True),
                         added("<new>", special=True)], byte_fallback=False),
    # Prepend + Replace instead of a pre-tokenizer (the Llama layout), byte fallback, no template
    "prepend": dict(normalizer={"type": "Sequence", "normalizers": [
                        {"type": "Prepend", "prepend": "\u2581"},
                        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
                    pre_tokenizer=None, post_processor=None, added=[added("</s>")], byte_fallback=True),
    # regex quantifiers, Metaspace never without split
    "regex": dict(normalizer={"type": "Sequence", "normalizers": [
                      {"type": "Replace", "pattern": {"Regex": "a{2,3}"}, "content": "b"},
                      {"type": "Replace", "pattern": {"Regex": "x+"}, "content": "y"},
                      {"type": "Replace", "pattern": {"Regex": "\\."}, "content": "c"},
                      {"type": "Replace", "pattern": {"Regex": "e{2}"}, "content": "\u00e9"}]},
                  pre_tokenizer=metaspace("never", split=False), post_processor=template([], ["</s>"]),
                  added=[added("</s>")], byte_fallback=False),
}


def variant_strings():
    r = random.Random(5)
    parts = ["a", "b", "c", "A", "B", "AB", "ab", " ", "  ", "\t", "\n", "\u2581", "[X]", " [X] ", "cat", "cats",
             "dog", "the", "x", "xx", "aaaa", "aa", "e", "ee", "eee", ".", "\u00e9", "e\u0301", "\u4e2d", "</s>",
             "<pad>", "<new>", "\u00c3", "Z", "\u00a0", "\u3000", "\u0301", "\U0001F600"]
    out = ["", " ", "a", "ab", "\u2581ab", "the cat", "cats", "a cat.", "[X]", "a [X] b", "a[X]b", "  [X]  ",
           "cat", "cat!", "bcat", "a cat b", "catcat", "dog", "hotdog", "AB", "xAB", "aaaaaaa", "xxxx", "eeee",
           "AAA", "A B", " lead", "trail ", "Z\u00e9Z", "\u00c3\u00a9", "<new><new>", "</s> </s>"]
    for _ in range(170):
        out.append("".join(r.choice(parts) for _ in range(r.randint(1, 9))))
    return out


def write_variants():
    from tokenizers import Tokenizer

    d = os.path.join(OUT, "variants")
    os.makedirs(d, exist_ok=True)
    texts = variant_strings()
    with open(os.path.join(d, "texts.jsonl"), "w") as f:
        for s in texts:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    for name, v in VARIANTS.items():
        js = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": v["added"],
              "normalizer": v["normalizer"], "pre_tokenizer": v["pre_tokenizer"],
              "post_processor": v["post_processor"], "decoder": None,
              "model": {"type": "Unigram", "unk_id": 2, "vocab": [list(x) for x in TINY_VOCAB],
                        "byte_fallback": v["byte_fallback"]}}
        text = json.dumps(js, ensure_ascii=False, indent=1)
        tok = Tokenizer.from_str(text)
        with open(os.path.join(d, name + ".json"), "w") as f:
            f.write(tok.to_str(pretty=True))
        tok = Tokenizer.from_file(os.path.join(d, name + ".json"))
        trunc = Tokenizer.from_file(os.path.join(d, name + ".json"))
        trunc.enable_truncation(5)
        with open(os.path.join(d, name + ".ids.jsonl"), "w") as f:
            for s in texts:
                ids = tok.encode(s, add_special_tokens=True).ids
                t5 = trunc.encode(s, add_special_tokens=True).ids
                f.write(json.dumps({"ids": ids, "trunc5": t5}) + "\n")


def main():
    if "--unicode-tables" in sys.argv[1:]:
        write_unicode_tables(os.path.join(ROOT, "lib", "text", "unicode_tables.h"))
        return
    from tokenizers import Tokenizer

    tmp = tempfile.mkdtemp(prefix="dfm-tok-")
    try:
        text_path = os.path.join(tmp, "train.txt")
        with open(text_path, "w") as f:
            f.write(training_text())
        extra_tokens = (["</s>", "<pad>", "<unk>", "<sep>", "<ctl>"] +
                        [f"<extra_id_{i}>" for i in (0, 1, 5, 6, 7, 42, 99, 100)])
        texts = corpus_strings(extra_tokens)
        assert len(texts) >= 2000, len(texts)
        if os.path.isdir(OUT):
            shutil.rmtree(OUT)
        os.makedirs(OUT)
        with open(os.path.join(OUT, "corpus.jsonl"), "w") as f:
            for s in texts:
                if "\x00" in s:
                    f.write(json.dumps({"hex": s.encode().hex()}) + "\n")
                else:
                    f.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")
        for spec in MODELS:
            name = spec["name"]
            d = os.path.join(OUT, name)
            os.makedirs(d)
            model_file = train(spec, text_path, tmp)
            shutil.copy(model_file, os.path.join(d, "spiece.model"))
            canon = convert(model_file, spec["extra_ids"]).to_str(pretty=False)
            stored = legacy_json(canon) if spec["legacy"] else canon
            with open(os.path.join(d, "tokenizer.json"), "w") as f:
                f.write(stored)
            cfg = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>",
                   "pad_token": "<pad>", "model_max_length": 512}
            if spec["config_extra_ids"]:
                cfg["extra_ids"] = spec["extra_ids"]
                cfg["additional_special_tokens"] = [f"<extra_id_{i}>" for i in range(spec["extra_ids"])]
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(cfg, f, indent=2)
            ref = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            canon_tok = Tokenizer.from_str(canon)
            eos = ref.token_to_id("</s>")
            assert ref.encode("", add_special_tokens=True).ids == [eos]
            trunc = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            trunc.enable_truncation(512)
            n_long = n_spm = 0
            ids_all = []
            with open(os.path.join(d, "ids.jsonl"), "w") as f:
                for s in texts:
                    ids = ref.encode(s, add_special_tokens=True).ids
                    ids_all.append(ids)
                    t = trunc.encode(s, add_special_tokens=True).ids
                    if len(ids) > 512:
                        n_long += 1
                        assert t == ids[:511] + [eos], "HF truncation is not first 511 + </s>"
                    else:
                        assert t == ids
                    spm_ids = canon_tok.encode(s, add_special_tokens=True).ids
                    if spm_ids != ids:
                        n_spm += 1
                        f.write(json.dumps({"ids": ids, "spm": spm_ids}) + "\n")
                    else:
                        f.write(json.dumps(ids) + "\n")
            assert n_long >= 5, n_long
            other = spm_only_transformers(model_file, spec["extra_ids"], texts, tmp)
            n_diff = sum(a != b for a, b in zip(other, ids_all)) if other else -1
            print(f"{name}: vocab {ref.get_vocab_size()}, {len(texts)} strings, {n_long} over 512 "
                  f"tokens, {n_spm} where the spiece.model (T5Converter) path differs from the stored "
                  f"tokenizer.json, {n_diff} where transformers' T5Tokenizer from spiece.model alone "
                  f"differs", file=sys.stderr)
        write_variants()
        import unicode_segmentation_rs as us

        with open(os.path.join(OUT, "graphemes.jsonl"), "w") as f:
            for s in grapheme_strings():
                b, pos = [], 0
                for g in us.graphemes(s, True):
                    pos += len(g.encode())
                    b.append(pos)
                f.write(json.dumps({"text": s, "b": b[:-1]}, ensure_ascii=False) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"wrote {OUT}: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
