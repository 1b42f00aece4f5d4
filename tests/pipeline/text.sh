# dfm-text-encode on tiny fixtures: a diffusers-style root with tokenizer/ (a SentencePiece
# Unigram model converted by transformers) and text_encoder/ (a random UMT5EncoderModel).
. "$DFM_TOP/tests/lib.sh"
F="$DFM_TOP/tests/fixtures"
mkdir -p model
ln -s "$F/tokenizer/rules" model/tokenizer
ln -s "$F/umt5/tiny" model/text_encoder
printf '%s\n' '{"_class_name": "WanPipeline", "tokenizer": ["transformers", "T5TokenizerFast"],' \
  ' "text_encoder": ["transformers", "UMT5EncoderModel"]}' > model/model_index.json
dfm-decode "$M/images" 2>/dev/null > s.mp
dfm-text-encode --model model s.mp 2>err > t.mp
expect_grep 'read 11, written 11, skipped 0' err
dfm-shard --list t.mp > l 2>/dev/null
k=images%2Ffox_in_snow%2Ejpg
n=$(field $k tokens.npy l | sed 's/i4\[\([0-9]*\)\]/\1/')
[ "$n" -ge 2 ] || fail "tokens: $(field $k tokens.npy l)"
expect_eq "text states" "$(field $k text.npy l)" "f2[$n,64]"
field $k json l | grep -q "\"text\":{\"tokens\":$n,\"max_length\":512,\"truncated\":false,\"dim\":64,\"dtype\":\"float16\"" \
  || fail "json: $(field $k json l)"
expect_eq "frames pass through" "$(field $k frames.npy l)" "u1[1,480,640,3]"
# the same caption again is reused, not re-encoded, and gives the same bytes
cat s.mp s.mp | dfm-text-encode --model model 2>err > t2.mp
expect_grep '11 repeated captions reused' err
# tokens only: no encoder needed; the ids match the full run's
dfm-text-encode --tokenizer model/tokenizer --tokens-only s.mp 2>/dev/null | dfm-shard --list > l2 2>/dev/null
expect_eq "tokens-only ids" "$(field $k tokens.npy l2)" "i4[$n]"
expect_eq "no states" "$(field $k text.npy l2)" ""
# --tokenizer + --text-encoder, f32 output, truncation
dfm-text-encode --tokenizer model/tokenizer --text-encoder model/text_encoder --out-dtype f32 --max-length 4 s.mp \
  2>/dev/null | dfm-shard --list > l3 2>/dev/null
expect_eq "truncated" "$(field $k text.npy l3)" "f4[4,64]"
field $k json l3 | grep -q '"truncated":true' || fail "truncated flag: $(field $k json l3)"
# --keep-mapped (weights used in place through OpenBLAS) gives the packed default's states
dfm-text-encode --model model --dtype f32 --out-dtype f32 --format tar s.mp 2>/dev/null > p.tar
dfm-text-encode --model model --dtype f32 --out-dtype f32 --keep-mapped --format tar s.mp 2>/dev/null > m.tar
[ -s p.tar ] && [ -s m.tar ] || fail "--keep-mapped run"
if python3 -c "import numpy" 2>/dev/null; then
  python3 - p.tar m.tar <<'PY' || fail "--keep-mapped states differ from the packed default's"
import io, sys, tarfile
import numpy as np
def states(path):
    with tarfile.open(path) as t:
        return {m.name: np.load(io.BytesIO(t.extractfile(m).read())) for m in t if m.name.endswith(".text.npy")}
a, b = states(sys.argv[1]), states(sys.argv[2])
assert a.keys() == b.keys() and len(a) == 11, (len(a), len(b))
d = max(float(np.abs(a[k] - b[k]).max()) for k in a)
assert d <= 1e-4, d
PY
fi
# a byte order mark at the start of txt (from a tool other than dfm-decode) is not tokenized
printf '\357\273\277a red fox in snow' > bom.txt
printf 'a red fox in snow' > plain.txt
tar --format=ustar -cf bom.tar bom.txt plain.txt
dfm-text-encode --tokenizer model/tokenizer --tokens-only bom.tar 2>err | dfm-shard --list > l5 2>/dev/null
expect_grep '1 repeated captions reused' err
expect_eq "bom tokens" "$(field bom tokens.npy l5)" "$(field plain tokens.npy l5)"
# an empty caption is valid (just </s>); invalid UTF-8 is a per-sample error
printf '' > empty.txt
python3 -c "
import msgpack,sys
sys.stdout.buffer.write(msgpack.packb({'__key__':'e','txt':b''},use_bin_type=True))
sys.stdout.buffer.write(msgpack.packb({'__key__':'bad','txt':b'caf\xe9'},use_bin_type=True))
sys.stdout.buffer.write(msgpack.packb({'__key__':'ok','txt':b'fine'},use_bin_type=True))" > odd.mp 2>/dev/null \
  || { echo "python3 msgpack missing: skipping the odd-caption part"; exit 0; }
dfm-text-encode --model model odd.mp 2>err | dfm-shard --list > l4 2>/dev/null
expect_eq "empty caption" "$(field e tokens.npy l4)" "i4[1]"
expect_grep "skipping sample 'bad': txt is not valid UTF-8 \(byte 0xe9 at offset 3 of 4\)" err
expect_grep 'read 3, written 2, skipped 1' err
