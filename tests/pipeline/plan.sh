# dfm-train --plan on the small Wan-architecture transformer of tests/fixtures/wan_transformer_demo:
#   1. the table's rows and the verdicts, exit 0, with only the model's config.json present (no
#      weights file: nothing is loaded)
#   2. the clip: assumed without shards, --plan-shape, or the largest bucket of data.shards (latents
#      made by the demo chain, as train.sh makes them)
#   3. ranks and the sharded optimizer; full fine-tuning; caption dropout without a text encoder
#   4. bad --world / --plan-shape values and settings exit 2 naming them
. "$DFM_TOP/tests/lib.sh"
FX="$DFM_TOP/tests/fixtures"

# code CMD... — run CMD with stdout in out and stderr in err, print its exit status
code() { set +e; "$@" > out 2> err; echo $?; set -e; }
# total COLUMN — the total row's figure (1: checkpointing on, 2: off) of ./out
total() { awk -v c="$1" '$1 == "total" { print $(1 + c) }' out; }

mkdir -p cfgonly/transformer
cp "$FX/wan_transformer_demo/transformer/config.json" cfgonly/transformer/
cat > c.yaml <<EOF
model:
  path: cfgonly
  text_len: 32
lora:
  rank: 4
train:
  threads: 2
EOF

# ---- 1. the table ---------------------------------------------------------------------------
expect_eq "--plan exit" "$(code dfm-train c.yaml --plan)" 0
[ ! -s err ] || { cat err >&2; fail "--plan wrote to stderr"; }
expect_grep "^dfm-train --plan c\.yaml: the memory of one rank" out
expect_grep "^  model     .*cfgonly/transformer: 2 blocks, dim 32 \(2 heads x 16\), ffn 64, text_dim 64; [0-9,]+ parameters$" out
expect_grep "^  training  LoRA rank 4 on 20 linears: [0-9,]+ trained parameters; base bf16, compute bf16$" out
for row in "weights \(frozen base, bf16\)" "LoRA adapters \(f32\)" "gradients \(f32\)" "AdamW moments \(2 x f32\)" \
           "block inputs \(3 x \[tokens, dim\]\)" "saved activations \(1 / 2 blocks\)" "backward of one block" \
           "attention working set" "embedders, head, inputs, data" "runtime \(process, scratch\)" \
           "margin \(10% of activations\)" "total"; do
  expect_grep "^  $row +[0-9]+\.[0-9]{2} +[0-9]+\.[0-9]{2}$" out
done
expect_no_grep "gradient shard" out
expect_grep "^  24 GiB GPU +fits either way \([0-9.]+ GiB with checkpointing, [0-9.]+ without\)$" out
expect_grep "^  80 GiB GPU +fits" out
expect_grep "^  this machine \([0-9.]+ GiB RAM\) +fits" out
# the table is a 4-line heading, 2 column titles, 12 rows, the verdicts
expect_eq "rows" "$(grep -cE '^  [a-zA-Z].* [0-9]+\.[0-9]{2} +[0-9]+\.[0-9]{2}$' out)" 12

# ---- 2. the clip -----------------------------------------------------------------------------
expect_grep "^  clip      latent \[16, 21, 60, 104\] \(81 frames at 480x832\): 32,760 tokens x batch 1 per rank, text 32 rows; assumed \(no data.shards\)" out
expect_eq "--plan-shape exit" "$(code dfm-train c.yaml --plan --plan-shape 1,4,4)" 0
expect_grep "^  clip      latent \[16, 1, 4, 4\] \(1 frame at 32x32\): 4 tokens x batch 1 per rank, text 32 rows; --plan-shape$" out
small=$(total 1)
expect_eq "--plan-shape 5,8,8 exit" "$(code dfm-train c.yaml --plan --plan-shape 5,8,8)" 0
expect_grep "80 tokens" out
awk -v a="$small" -v b="$(total 1)" 'BEGIN { exit !(b + 0 >= a + 0) }' || fail "a longer clip planned smaller: $small > $(total 1)"
# shards: the demo chain on the generated images (latents [16,1,4,4]) with a batch of 2
latent_shards 0/1 shards/train-%06d.tar
expect_eq "--plan with shards exit" "$(code dfm-train c.yaml --plan --data.shards shards/ --data.batch_size 2)" 0
expect_grep "^  clip      latent \[16, 1, 4, 4\] \(1 frame at 32x32\): 4 tokens x batch 2 per rank, text 32 rows; from data.shards: the largest of 1 bucket$" out
# shards that are not there: said, and the assumed clip
expect_eq "--plan, no such shards exit" "$(code dfm-train c.yaml --plan --data.shards no-such-dir/)" 0
expect_grep "^  clip      .*32,760 tokens .*assumed \(data.shards: .*no-such-dir" out

# ---- 3. ranks, full fine-tuning, caption dropout -------------------------------------------
expect_eq "--world 4 exit" "$(code dfm-train c.yaml --plan --world 4 --dist.shard_optimizer true)" 0
expect_grep "^  ranks     4 \(--world\); AdamW moments sharded over the ranks" out
expect_grep "^  AdamW moments \(1/4 of them\) +[0-9.]+ +[0-9.]+$" out
expect_grep "^  gradient shard \+ staging +0\.02 +0\.02$" out   # 2 buckets of 16 MiB / 4 and 16 MiB + 4 floats
expect_eq "full exit" "$(code dfm-train c.yaml --plan --lora.rank 0)" 0
expect_grep "^  training  full fine-tuning: [0-9,]+ trained parameters \(f32\); compute bf16$" out
expect_grep "^  weights \(f32, trained\) " out
expect_no_grep "LoRA adapters" out
expect_eq "caption dropout exit" "$(code dfm-train c.yaml --plan --train.caption_dropout 0.1)" 0
expect_grep "^  note      caption dropout needs the empty prompt: no text_encoder/ under model.path" out
expect_grep "UMT5 text encoder adds 8\.[0-9]{2} GiB" out   # UMT5-XXL's bf16 GEMM weights
# a diffusers root with the tiny UMT5 as its text encoder: its config read, its size counted
mkdir model/transformer
cp cfgonly/transformer/config.json model/transformer/
expect_eq "caption dropout with a text encoder exit" \
  "$(code dfm-train c.yaml --plan --train.caption_dropout 0.1 --model.path model --plan-shape 1,4,4)" 0
expect_grep "^  note      caption dropout encodes the empty prompt with model/text_encoder at start" out
expect_grep "UMT5 text encoder adds 0\.00 GiB" out

# ---- 4. bad values ---------------------------------------------------------------------------
for bad in "--world 0|--world: '0' is not a number of ranks" "--world x|--world: 'x' is not a number of ranks" \
           "--world|--world needs a value" "--plan-shape 1,4|--plan-shape: '1,4' is not F,H,W" \
           "--plan-shape 1,4,4,4|--plan-shape: '1,4,4,4' is not F,H,W" \
           "--plan-shape 1,3,4|is not a positive multiple of the patch" \
           "--data.batch_size 0|data.batch_size must be >= 1" "--lora.rank -1|lora.rank"; do
  expect_eq "--plan ${bad%%|*} exit" "$(code dfm-train c.yaml --plan ${bad%%|*})" 2
  expect_grep "^dfm-train: error: .*${bad#*|}" err
  [ ! -s out ] || fail "--plan ${bad%%|*} printed a table"
done
expect_eq "--world without --plan exit" "$(code dfm-train c.yaml --world 2)" 2
expect_grep "^dfm-train: error: --world and --plan-shape go with --plan" err
# a model that cannot be read fails (1) as training would; no model.path at all is usage (2)
printf 'model:\n  path: no-such-model\n' > nomodel.yaml
expect_eq "--plan, no such model exit" "$(code dfm-train nomodel.yaml --plan)" 1
expect_grep "^dfm-train: error: model 'no-such-model'" err
printf 'lora:\n  rank: 4\n' > nopath.yaml
expect_eq "--plan, no model.path exit" "$(code dfm-train nopath.yaml --plan)" 2
expect_grep "^dfm-train: error: no model: set model.path" err
