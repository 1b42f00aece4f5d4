# A bad key is one bad sample, not the end of the run: a msgpack stream (from Python or another
# tool) with a key a tar shard cannot carry, at the start, middle or end, goes through every
# program on the shared loop and dfm-shard's sink with that sample skipped — its key and reason
# on stderr, counted in the summary — and every other sample kept; a bad first sample opens no
# shard. (tests/unit/test_stream_errors.c sweeps every key shape in both framings.)
. "$DFM_TOP/tests/lib.sh"
# msgpack by hand (fixmap, fixstr and bin8: names and values under 32 bytes)
byte() { printf "\\$(printf %o "$1")"; }
str() { byte $((0xa0 + $(printf %s "$1" | wc -c))); printf %s "$1"; }
bin() { printf '\304'; byte "$(printf %s "$1" | wc -c)"; printf %s "$1"; }
# rec KEY [FIELD]: {"__key__": KEY, FIELD (default txt): b"a caption"}
rec() { byte $((0x82)); str __key__; str "$1"; str "${2:-txt}"; bin "a caption"; }

dfm-decode "$M/images/wide" "$M/images/fox_in_snow.jpg" 2>/dev/null > a.mp   # 3 samples
dfm-decode "$M/images/tall_tree.png" 2>/dev/null > b.mp                       # 1 sample
good=$(cat a.mp b.mp | dfm-shard --list 2>/dev/null | cut -f1 | tr '\n' ' ')

# sweep: KEY|FIELD|what the message says
cat > shapes <<'EOF'
a.b||the key has a dot
||the key is empty
..||the key has a '.' or '..' path component
dir/../x||the key has a '.' or '..' path component
__meta__||the key looks like metadata
/abs||the key has an empty path component
good_key|TXT|field name 'TXT' has '/' or upper-case letters
EOF
printf 'bad\377||the key is not valid UTF-8\n' >> shapes
i=0
while IFS='|' read -r key field why; do
  i=$((i + 1))
  rec "$key" "$field" > bad.mp
  shown=$(printf %s "$key" | sed 's/\xff/\\\\xff/')
  for at in start middle end; do
    case $at in
      start) cat bad.mp a.mp b.mp ;;
      middle) cat a.mp bad.mp b.mp ;;
      end) cat a.mp b.mp bad.mp ;;
    esac > in.mp
    # dfm-shard into shards (the sink), --cat to both framings, dfm-bucket
    rm -rf out
    dfm-shard -o out/t-%03d.tar --max-count 2 in.mp 2>err || { cat err; fail "#$i $at: dfm-shard -o exit"; }
    expect_grep "error: skipping sample '$shown': $why" err
    expect_grep "read 5, written 4, skipped 1, .* 2 shards$" err
    expect_eq "#$i $at: shards" "$(ls out | tr '\n' ' ')" "index.json t-000.tar t-001.tar "
    expect_eq "#$i $at: kept" "$(dfm-shard --list out/t-000.tar out/t-001.tar 2>/dev/null | cut -f1 | tr '\n' ' ')" "$good"
    fmts=msgpack; [ $at = middle ] && fmts="msgpack tar"
    for fmt in $fmts; do
      dfm-shard --cat --format $fmt in.mp 2>err > o || { cat err; fail "#$i $at: --cat $fmt exit"; }
      expect_grep "error: skipping sample '$shown': $why" err
      expect_grep "read 5, written 4, skipped 1" err
      expect_eq "#$i $at: --cat $fmt kept" "$(dfm-shard --list o 2>/dev/null | cut -f1 | tr '\n' ' ')" "$good"
    done
  done
done < shapes
[ $i -eq 8 ] || fail "read $i shapes"

# dfm-bucket, dfm-vae-encode and dfm-text-encode skip a bad key before any work on the sample
rec 'x.y' > bad.mp
cat a.mp bad.mp b.mp > in.mp
dfm-bucket --size 32x32 in.mp 2>err > o || { cat err; fail "dfm-bucket exit"; }
expect_grep "error: skipping sample 'x.y': the key has a dot" err
expect_grep "read 5, written 4, skipped 1" err
expect_eq "dfm-bucket kept" "$(dfm-shard --list o 2>/dev/null | cut -f1 | tr '\n' ' ')" "$good"
cat a.mp bad.mp | dfm-bucket --size 32x16 2>/dev/null \
  | dfm-vae-encode --model "$DFM_TOP/tests/fixtures/wan_vae/z16" 2>err > o || { cat err; fail "vae exit"; }
expect_grep "read 3, written 3, skipped 0" err   # dfm-bucket already dropped it
dfm-vae-encode --model "$DFM_TOP/tests/fixtures/wan_vae/z16" in.mp 2>err > o
expect_grep "error: skipping sample 'x.y': the key has a dot" err
mkdir -p model
ln -s "$DFM_TOP/tests/fixtures/tokenizer/rules" model/tokenizer
ln -s "$DFM_TOP/tests/fixtures/umt5/tiny" model/text_encoder
printf '%s\n' '{"_class_name": "WanPipeline", "tokenizer": ["transformers", "T5TokenizerFast"],' \
  ' "text_encoder": ["transformers", "UMT5EncoderModel"]}' > model/model_index.json
dfm-text-encode --model model in.mp 2>err > o || { cat err; fail "text-encode exit"; }
expect_grep "error: skipping sample 'x.y': the key has a dot" err
expect_grep "read 5, written 4, skipped 1" err
# --strict stops at it: exit 1, and no end record goes on
set +e
dfm-bucket --size 32x32 --strict in.mp 2>err > o; rc=$?
set -e
expect_eq "strict exit" $rc 1
set +e
dfm-shard --list o > /dev/null 2>err; rc=$?
set -e
expect_eq "after a strict stop the stream reads as cut" $rc 1
expect_grep 'input truncated' err
