"""SeedVR2 weight files: community FP8 files (plain e4m3 casts and files with scale keys) load
to exactly the dequantized values or, into FP8Linear modules, bit for bit; RoPE frequencies
never come from a file (a low-precision or corrupted buffer changes nothing)."""

import torch

from vsrkit import hub, quant
from vsrkit.engines.seedvr2 import weights as W
from vsrkit.engines.seedvr2.config import infer_dit_config
from vsrkit.engines.seedvr2.dit import NaDiT

from .common import TINY, need_parity


def _sd():
    need_parity()
    return hub.load_state_dict(TINY / "seedvr2_ema_3b.pth")


def _fp8(sd, with_scales: bool):
    """The community layout: 2-D weights as float8_e4m3fn, optionally with a per-tensor
    ``scale_weight`` key; everything else float16."""
    out = {}
    for k, v in sd.items():
        if v.ndim == 2 and k.endswith(".weight"):
            s = v.abs().max() / 448.0 if with_scales else torch.tensor(1.0)
            out[k] = (v / s).to(quant.FP8)
            if with_scales:
                out[k[:-len(".weight")] + ".scale_weight"] = s.float()
        else:
            out[k] = v.half()
    return out


def _dit(sd, dtype=torch.float32):
    with torch.device("meta"):
        m = NaDiT(infer_dit_config(sd)).to(dtype)
    return m


def test_fp8_files_load_to_the_dequantized_values():
    sd = _sd()
    for with_scales in (False, True):
        f8 = _fp8(sd, with_scales)
        m = _dit(sd)
        W.load_into(m, dict(f8), "x_fp8_e4m3fn.safetensors", "SeedVR2 DiT")
        got = m.state_dict()
        for k, v in f8.items():
            if v.dtype == quant.FP8:
                s = f8.get(k[:-len(".weight")] + ".scale_weight", torch.tensor(1.0))
                assert torch.equal(got[k], v.float() * s), k
                assert (got[k] - sd[k]).abs().max() <= sd[k].abs().max() / 8  # e4m3: 3 bits
            elif not k.endswith(("scale_weight", W.ROPE_SUFFIX)):
                assert torch.equal(got[k], v.float()), k


def test_fp8_file_into_fp8_linears_keeps_the_bits():
    sd = _sd()
    f8 = _fp8(sd, with_scales=False)
    m = _dit(sd, torch.bfloat16)
    quant.quantize_linears(m, scheme="per_tensor")  # as --weights-dtype fp8 does, on meta
    W.load_into(m, dict(f8), "x_fp8_e4m3fn.safetensors", "SeedVR2 DiT")
    lin = dict(m.named_modules())["blocks.0.attn.proj_qkv.vid"]
    assert isinstance(lin, quant.FP8Linear)
    want = f8["blocks.0.attn.proj_qkv.vid.weight"]
    assert torch.equal(lin.weight.view(torch.uint8), want.view(torch.uint8))
    assert float(lin.weight_scale) == 1.0


def test_rope_freqs_never_read_from_the_file():
    sd = _sd()
    cfg = infer_dit_config(sd)
    txt = W.load_text(TINY / "pos_emb.pt")
    x = torch.randn(2, 4, 6, cfg.in_channels, generator=torch.Generator().manual_seed(0))
    outs = []
    for bad in (False, True):
        s = dict(sd)
        if bad:  # a low-precision file with a wrong table: ignored, computed in fp32
            s = {k: (torch.full_like(v, 7.0).half() if k.endswith(W.ROPE_SUFFIX) else v)
                 for k, v in s.items()}
        m = _dit(sd)
        W.load_into(m, s, "x.pth", "SeedVR2 DiT")
        with torch.no_grad():
            outs.append(m(x, m.embed_text(txt)))
    assert torch.equal(outs[0], outs[1])
    assert not any("rope" in k for k in m.state_dict())  # no buffer a file could fill
    # a bf16 model still rotates with float32 tables, computed from the config
    from vsrkit.engines.seedvr2.dit import make_layout

    lay = make_layout(cfg, (2, 2, 3), txt.shape[0], "cpu")
    assert lay.windows[False].cos.dtype == torch.float32
