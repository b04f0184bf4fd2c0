"""FP8 weights: numerics of the dequant (and, where CPU torch has it, scaled_mm) path, the
module swap on a tiny DiT-like stack, dtype casts, and loading FP8 checkpoints."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsrkit.errors import WeightsError
from vsrkit.quant import (FP8, FP8Linear, dequantize_weight, is_fp8_checkpoint, fit_state_dict,
                          quantize_linears, quantize_weight, split_scales)


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class Block(nn.Module):
    """Wan-like in miniature: q, k, v, o projections and a GELU FFN, pre-norm residuals."""

    def __init__(self, d=64, f=160, heads=4):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ffn = nn.Sequential(nn.Linear(d, f), nn.GELU(approximate="tanh"), nn.Linear(f, d))

    def forward(self, x):  # (B, L, D)
        b, n, d = x.shape
        h = self.norm1(x)
        q, k, v = (p(h).view(b, n, self.heads, -1).transpose(1, 2)
                   for p in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.o(a)
        return x + self.ffn(self.norm2(x))


class Stack(nn.Module):
    def __init__(self, n=4, d=64):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d) for _ in range(n))
        self.head = nn.Linear(d, 16)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_quantize_roundtrip_error():
    w = torch.randn(96, 128) * 0.02
    for scheme, bound in (("per_channel", 0.035), ("per_tensor", 0.045)):
        q, s = quantize_weight(w, scheme)
        assert q.dtype == FP8 and s.dtype == torch.float32
        assert s.shape == ((96, 1) if scheme == "per_channel" else ())
        assert rel(dequantize_weight(q, s, torch.float32), w) < bound
    # Scales put each row's absmax exactly at the top of the FP8 range.
    q, s = quantize_weight(w, "per_channel")
    assert torch.equal(q.float().abs().amax(1), torch.full((96,), 448.0))


def test_zero_rows_do_not_divide_by_zero():
    w = torch.zeros(16, 32)
    q, s = quantize_weight(w)
    assert torch.isfinite(s).all() and torch.equal(dequantize_weight(q, s, torch.float32), w)


@pytest.mark.parametrize("dtype,bound", [(torch.float32, 0.035), (torch.bfloat16, 0.04)])
def test_dequant_linear_close_to_reference(dtype, bound):
    lin = nn.Linear(128, 96)
    x = torch.randn(3, 10, 128)
    ref = lin(x)  # float32 reference
    q = FP8Linear.from_linear(lin, backend="dequant")
    y = q(x.to(dtype))
    assert y.dtype == dtype and y.shape == (3, 10, 96)
    assert rel(y, ref) < bound
    # bf16 itself, for scale: FP8 costs a few times bf16's rounding, not orders more.
    if dtype == torch.bfloat16:
        assert rel(lin.to(dtype)(x.to(dtype)), ref) < 0.01


def _cpu_scaled_mm_works():
    try:
        a = torch.zeros(16, 16, dtype=FP8)
        torch._scaled_mm(a, a.t(), scale_a=torch.ones(16, 1), scale_b=torch.ones(1, 16),
                         out_dtype=torch.bfloat16)
        return True
    except (RuntimeError, NotImplementedError):
        return False


@pytest.mark.skipif(not _cpu_scaled_mm_works(), reason="this torch has no CPU _scaled_mm")
@pytest.mark.parametrize("scheme,act", [("per_channel", "per_token"), ("per_tensor", "per_tensor"),
                                        ("per_channel", "per_tensor"), ("per_tensor", "per_token")])
def test_scaled_mm_path_matches_reference(scheme, act):
    lin = nn.Linear(128, 96)
    x = torch.randn(37, 128)  # M need not be a multiple of 16
    ref = lin(x)
    q = FP8Linear.from_linear(lin, scheme=scheme, act_scale=act, backend="scaled_mm")
    y = q(x.bfloat16())
    assert y.dtype == torch.bfloat16
    # Weight and activation both rounded to FP8: about twice the weight-only error.
    assert rel(y, ref) < 0.07
    deq = FP8Linear.from_linear(lin, scheme=scheme, backend="dequant")(x.bfloat16())
    assert rel(y, deq) < 0.06


def test_scaled_mm_refuses_odd_shapes_and_auto_falls_back():
    lin = nn.Linear(20, 24)
    with pytest.raises(ValueError, match="multiples of 16"):
        FP8Linear.from_linear(lin, backend="scaled_mm")(torch.randn(2, 20).bfloat16())
    y = FP8Linear.from_linear(lin)(torch.randn(2, 20))  # auto on CPU: dequant
    assert y.shape == (2, 24)


def test_swap_keeps_dit_stack_close():
    model = Stack().eval()
    x = torch.randn(2, 24, 64)
    with torch.no_grad():
        ref = model(x)
        rep = quantize_linears(model, filter=lambda name, m: name != "head")
        y = model(x)
    assert len(rep.swapped) == 4 * 6 and rep.skipped == ["head"]
    assert rep.bytes_after < rep.bytes_before * 0.3  # fp32 -> fp8 + scales
    assert isinstance(model.blocks[0].ffn[0], FP8Linear) and type(model.head) is nn.Linear
    assert rel(y, ref) < 0.05
    assert "24 linear layers" in rep.describe()


def test_dtype_cast_keeps_fp8_and_fp32_scales():
    model = Stack(n=1)
    quantize_linears(model)
    model.to(torch.bfloat16)
    lin = model.blocks[0].q
    assert lin.weight.dtype == FP8 and lin.weight_scale.dtype == torch.float32
    assert lin.bias.dtype == torch.bfloat16 and model.head.weight.dtype == FP8
    with torch.no_grad():
        assert model(torch.randn(1, 8, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_state_dict_roundtrip_and_meta_build():
    model = Stack(n=2)
    quantize_linears(model)
    sd = model.state_dict()
    assert sd["blocks.0.q.weight"].dtype == FP8 and sd["blocks.0.q.weight_scale"].shape == (64, 1)
    with torch.device("meta"):
        fresh = Stack(n=2)
    quantize_linears(fresh)  # the swap works before any weight exists
    fresh.load_state_dict(sd, strict=True, assign=True)
    x = torch.randn(1, 8, 64)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_high_precision_checkpoint_into_swapped_model():
    src = Stack(n=2)
    sd = src.state_dict()
    model = Stack(n=2)
    quantize_linears(model)
    model.load_state_dict(sd)  # quantized on load
    x = torch.randn(1, 8, 64)
    with torch.no_grad():
        assert rel(model(x), src(x)) < 0.05


def _comfy_scaled_fp8(sd):
    """A checkpoint as ComfyUI's "scaled fp8" files store one: per-tensor scale_weight keys
    and a scaled_fp8 marker; norms and biases left in high precision."""
    out = {"scaled_fp8": torch.empty(0, dtype=FP8)}
    for k, v in sd.items():
        if k.endswith(".weight") and v.ndim == 2:
            q, s = quantize_weight(v, "per_tensor")
            out[k], out[k[: -len("weight")] + "scale_weight"] = q, s
        else:
            out[k] = v
    return out


def test_scaled_fp8_checkpoint_kept_as_fp8_or_upcast():
    src = Stack(n=2)
    ck = _comfy_scaled_fp8(src.state_dict())
    assert is_fp8_checkpoint(ck)
    tensors, scales = split_scales(ck)
    assert set(tensors) == set(src.state_dict())  # key checks see a bf16 checkpoint's keys
    x = torch.randn(1, 8, 64)

    fp8_model = Stack(n=2)
    quantize_linears(fp8_model, filter=lambda n, m: n != "head")
    sd = fit_state_dict(tensors, scales, fp8_model, dtype=torch.float32)
    fp8_model.load_state_dict(sd, strict=True)
    # FP8 bits are taken over as they are (no second rounding).
    assert torch.equal(fp8_model.blocks[1].v.weight.view(torch.uint8),
                       ck["blocks.1.v.weight"].view(torch.uint8))
    assert fp8_model.head.weight.dtype == torch.float32  # filtered out: upcast once

    plain = Stack(n=2)
    plain.load_state_dict(fit_state_dict(tensors, scales, plain, dtype=torch.float32), strict=True)
    with torch.no_grad():
        ref, a, b = src(x), fp8_model(x), plain(x)
    assert rel(a, b) < 1e-5 and rel(b, ref) < 0.05


def test_plain_fp8_checkpoint_assign_then_swap():
    """Kijai-style *_fp8_e4m3fn files: weights simply cast to FP8, no scales. Loaded with
    assign=True the Linear holds FP8 weights; the swap wraps them without re-rounding."""
    src = Stack(n=1)
    ck = {k: (v * 100).to(FP8) if v.ndim == 2 else v for k, v in src.state_dict().items()}
    model = Stack(n=1)
    model.load_state_dict(ck, assign=True)
    rep = quantize_linears(model, filter=lambda n, m: n != "head", dtype=torch.float32)
    assert rep.upcast == ["head.weight"] and model.head.weight.dtype == torch.float32
    assert torch.equal(model.blocks[0].o.weight.view(torch.uint8),
                       ck["blocks.0.o.weight"].view(torch.uint8))
    assert model.blocks[0].o.scheme == "per_channel"  # scale 1 broadcast per channel
    with torch.no_grad():
        model(torch.randn(1, 4, 64))


def test_per_channel_and_block_scales():
    w = torch.randn(32, 256) * 0.05
    q, s = quantize_weight(w, "per_channel")
    tensors, scales = split_scales({"l.weight": q, "l.weight_scale": s.flatten(),
                                    "l.bias": torch.zeros(32)})
    m = nn.Sequential()
    m.add_module("l", nn.Linear(256, 32))
    quantize_linears(m, scheme="per_tensor")  # per-channel file into a per-tensor module
    sd = fit_state_dict(tensors, scales, m, dtype=torch.float32)
    assert sd["l.weight_scale"].shape == ()
    assert rel(dequantize_weight(sd["l.weight"], sd["l.weight_scale"], torch.float32), w) < 0.05
    # DeepSeek-style 128x128 block scales (weight_scale_inv) are dequantized correctly.
    blocks = torch.tensor([[0.5, 2.0]])  # (ceil(32/128), ceil(256/128))
    q8 = torch.randn(32, 256).to(FP8)
    full = dequantize_weight(q8, blocks, torch.float32)
    assert torch.equal(full[:, :128], q8.float()[:, :128] * 0.5)
    assert torch.equal(full[:, 128:], q8.float()[:, 128:] * 2.0)


def test_orphan_scale_is_a_weights_error():
    with pytest.raises(WeightsError, match="x.weight"):
        split_scales({"x.scale_weight": torch.tensor(1.0)})


needs_fp8_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)),
    reason="needs a CUDA GPU with FP8 matrix units (compute capability >= 8.9)")


@pytest.mark.gpu
@needs_fp8_gpu
def test_gpu_auto_backend_uses_scaled_mm():
    from vsrkit.quant import has_fp8_matmul

    lin = nn.Linear(256, 512).cuda()
    x = torch.randn(100, 256, device="cuda")
    ref = lin(x)
    q = FP8Linear.from_linear(lin)
    assert has_fp8_matmul(x.device) and q._uses_scaled_mm(x.bfloat16())
    assert rel(q(x.bfloat16()), ref) < 0.07
    assert not q._uses_scaled_mm(x)  # float32 activations take the dequant path
    assert rel(q(x), ref) < 0.05
