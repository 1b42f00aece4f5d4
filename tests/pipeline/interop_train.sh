# What dfm-train saves loads in diffusers with dfm's output: the unit-test binary trains a LoRA and
# a full fine-tuning of the tiny transformer and writes both checkpoints with dfm's forwards
# (DFM_INTEROP_OUT, tests/unit/test_train_interop.c); scripts/check-train-interop.py loads the
# adapter with WanPipeline.load_lora_into_transformer (what load_lora_weights does) and the full
# checkpoint with WanTransformer3DModel.from_pretrained, and compares the outputs (2e-5 of max).
# Python: $DFM_PYTHON, else python3; skips (77) without torch, diffusers and peft
# (e.g. DFM_PYTHON=/tmp/venv-wan/bin/python tests/run.sh build/bin all).
. "$DFM_TOP/tests/lib.sh"
py=${DFM_PYTHON:-python3}
"$py" -c "import torch, diffusers, peft, safetensors, numpy" 2>/dev/null || { echo "$py lacks torch/diffusers/peft (set DFM_PYTHON)"; exit 77; }
DFM_FIXTURES="$DFM_TOP/tests/fixtures" DFM_INTEROP_OUT="$PWD/out" dfm-unit-tests train_interop > log 2>&1 || { cat log >&2; fail "training and saving"; }
expect_grep "^2 passed, 0 failed" log
"$py" "$DFM_TOP/scripts/check-train-interop.py" "$PWD/out" > py.log 2>&1 || { cat py.log >&2; fail "diffusers disagrees with dfm"; }
cat py.log
