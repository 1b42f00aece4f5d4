#!/usr/bin/env python3
"""check-lora-convert.py: check dfm-lora's outputs with diffusers and PEFT themselves.

    check-lora-convert.py [DFM_LORA] [FIXTURE_DIR]

DFM_LORA: the dfm-lora binary (default bin/dfm-lora); FIXTURE_DIR: a Wan transformer fixture
(default tests/fixtures/wan_transformer/a, made by make-wan-transformer-fixtures.py). Converts
FIXTURE_DIR/lora (the ComfyUI / diffusion-pipe adapter) and FIXTURE_DIR/lora/diffusers (diffusers'
own file, alpha 8 = scale 2 in its header metadata) to every family, then:
  * comfyui: diffusers' _convert_non_diffusers_wan_lora_to_diffusers raises nothing, and
    WanPipeline.lora_state_dict + load_lora_into_transformer (what load_lora_weights does) loads it;
  * diffusers: WanTransformer3DModel.load_lora_adapter(prefix="transformer") loads it with no
    unexpected keys and no warning;
  * musubi: diffusers' _convert_musubi_wan_lora_to_diffusers raises nothing, and the pipeline path
    loads it;
  * peft: PeftModel.from_pretrained loads the directory with no unexpected or missing LoRA keys;
and in each case the transformer's forward on the fixture's inputs equals lora_out.npy (the
forward of the adapter as diffusers trained it) within 1e-6 of max |out|. Exit status 0 when every
check passes. Not part of `make test`: it needs torch, diffusers (0.42) and peft.
"""
import logging
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from diffusers.loaders.lora_conversion_utils import (_convert_musubi_wan_lora_to_diffusers,
                                                     _convert_non_diffusers_wan_lora_to_diffusers)
from peft import PeftModel
from safetensors.torch import load_file

failures = []


class Catch(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.msgs = []

    def emit(self, record):
        self.msgs.append(record.getMessage())


def load_base(fx):
    m = WanTransformer3DModel.from_pretrained(os.path.join(fx, "transformer"), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.data = p.data.clone()
    return m


def forward(m, fx):
    x = torch.from_numpy(np.load(os.path.join(fx, "hidden_states.npy")))
    t = torch.from_numpy(np.load(os.path.join(fx, "timestep.npy")))
    ctx = torch.from_numpy(np.load(os.path.join(fx, "encoder_hidden_states.npy")))
    with torch.no_grad():
        return m(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]


def check(what, ok, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(what)


def compare(what, m, fx):
    ref = torch.from_numpy(np.load(os.path.join(fx, "lora_out.npy")))
    out = forward(m, fx)
    e = float((out - ref).abs().max() / ref.abs().max())
    check(f"{what}: forward = lora_out.npy", e <= 1e-6, f"{e:.2e} of max|out|")


def main():
    dfm = sys.argv[1] if len(sys.argv) > 1 else "bin/dfm-lora"
    fx = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/wan_transformer/a"
    catch = Catch()
    for name in ("diffusers", "peft"):
        logging.getLogger(name).addHandler(catch)
    tmp = tempfile.mkdtemp(prefix="check-lora-")
    for src_name, src in (("comfyui fixture", os.path.join(fx, "lora")),
                          ("diffusers fixture", os.path.join(fx, "lora", "diffusers"))):
        print(f"{src_name}: {src}")
        out = {}
        for fam in ("comfyui", "diffusers", "musubi", "peft"):
            p = os.path.join(tmp, f"{src_name.split()[0]}_{fam}" + ("" if fam == "peft" else ".safetensors"))
            subprocess.run([dfm, "convert", src, p, "--to", fam], check=True, stderr=subprocess.DEVNULL)
            out[fam] = p

        # comfyui: the converter, then what load_lora_weights does
        sd = load_file(out["comfyui"])
        try:
            conv = _convert_non_diffusers_wan_lora_to_diffusers(dict(sd))
            check("comfyui: _convert_non_diffusers_wan_lora_to_diffusers", len(conv) == len(sd), f"{len(conv)} keys")
        except Exception as ex:  # noqa: BLE001 — any exception is the finding
            check("comfyui: _convert_non_diffusers_wan_lora_to_diffusers", False, repr(ex))
        m = load_base(fx)
        catch.msgs.clear()
        sdp, md = WanPipeline.lora_state_dict(out["comfyui"], return_lora_metadata=True)
        WanPipeline.load_lora_into_transformer(sdp, transformer=m, metadata=md)
        check("comfyui: load_lora_into_transformer warns nothing", not catch.msgs, "; ".join(catch.msgs)[:300])
        compare("comfyui", m, fx)

        # diffusers: load_lora_adapter, no unexpected keys
        m = load_base(fx)
        catch.msgs.clear()
        m.load_lora_adapter(out["diffusers"], prefix="transformer")
        unexpected = [s for s in catch.msgs if "unexpected" in s.lower()]
        check("diffusers: load_lora_adapter leaves no unexpected keys", not unexpected, "; ".join(unexpected)[:300])
        check("diffusers: load_lora_adapter warns nothing", not catch.msgs, "; ".join(catch.msgs)[:300])
        compare("diffusers", m, fx)

        # musubi: diffusers' musubi converter, then the pipeline path
        sd = load_file(out["musubi"])
        try:
            conv = _convert_musubi_wan_lora_to_diffusers(dict(sd))
            check("musubi: _convert_musubi_wan_lora_to_diffusers", len(conv) == 2 * len(sd) // 3, f"{len(conv)} keys")
        except Exception as ex:  # noqa: BLE001
            check("musubi: _convert_musubi_wan_lora_to_diffusers", False, repr(ex))
        m = load_base(fx)
        sdp, md = WanPipeline.lora_state_dict(out["musubi"], return_lora_metadata=True)
        WanPipeline.load_lora_into_transformer(sdp, transformer=m, metadata=md)
        compare("musubi", m, fx)

        # peft: PeftModel.from_pretrained, and load_adapter's own report
        pm = PeftModel.from_pretrained(load_base(fx), out["peft"])
        res = pm.load_adapter(out["peft"], adapter_name="again")
        missing = [k for k in res.missing_keys if "lora_" in k and ".again." in k]
        check("peft: load_adapter: no unexpected keys", not res.unexpected_keys, str(res.unexpected_keys[:4]))
        check("peft: load_adapter: no missing LoRA keys", not missing, str(missing[:4]))
        pm.set_adapter("default")
        compare("peft", pm, fx)
    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
