"""FP8 (e4m3) weights for ``nn.Linear``, as a module swap (gpt-fast's ``WeightOnlyInt8Linear``
pattern): ``quantize_linears(model)`` replaces each chosen ``nn.Linear`` by an ``FP8Linear``.

``FP8Linear`` stores ``weight`` as float8_e4m3fn ``(N, K)`` and ``weight_scale`` as float32,
``(N, 1)`` per output channel or ``()`` per tensor, so that ``W ~= weight * weight_scale``.
Its forward picks, per call:

- ``scaled_mm`` on GPUs with FP8 matrix units (compute capability >= 8.9; Hopper is 9.0):
  the activation is quantized too (one scale per token, or one per tensor) and
  ``torch._scaled_mm`` multiplies in FP8, applying both scales in its epilogue;
- ``dequant`` elsewhere (CPU, older GPUs): the weight is expanded to the compute dtype and
  multiplied with ``F.linear``. This saves memory, not time.

Community FP8 checkpoints (e.g. Kijai's / ComfyUI's ``*_fp8_e4m3fn.safetensors``) store
weights as float8 with or without a scale key (``scale_weight``, ``weight_scale``) and
sometimes a ``scaled_fp8`` marker. ``split_scales`` takes the scales out (so key checks see
the same keys as a bf16 checkpoint) and ``fit_state_dict`` adapts a checkpoint to a model:
weights of ``FP8Linear``s stay FP8 (or are quantized once), every other FP8 tensor is
upcast once.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import WeightsError

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448.0
# Floor of an absmax before it becomes a scale: an all-zero row must not divide by zero.
_AMAX_FLOOR = 1e-12
# _scaled_mm's layout rule: K and N multiples of 16 (M is free).
_MM_MULTIPLE = 16

Scheme = Literal["per_channel", "per_tensor"]
ActScale = Literal["per_token", "per_tensor"]
Backend = Literal["auto", "scaled_mm", "dequant"]


def quantize_weight(w: torch.Tensor, scheme: Scheme = "per_channel"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, K)`` float -> ``(fp8 (N, K), float32 scale)``; scale is ``(N, 1)`` per channel or
    ``()`` per tensor, chosen so each row's (or the tensor's) absmax maps to FP8_MAX."""
    w32 = w.float()
    if scheme == "per_channel":
        amax = w32.abs().amax(dim=1, keepdim=True)  # (N, 1)
    elif scheme == "per_tensor":
        amax = w32.abs().amax()
    else:
        raise ValueError(f"unknown FP8 scheme {scheme!r}: per_channel or per_tensor")
    scale = amax.clamp(min=_AMAX_FLOOR) / FP8_MAX
    q = (w32 / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


def dequantize_weight(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """FP8 ``(N, K)`` and a scale of shape ``()``, ``(1,)``, ``(N,)``, ``(N, 1)`` or blocks
    ``(ceil(N/b), ceil(K/b))`` -> ``(N, K)`` in ``dtype`` (computed in float32)."""
    n, k = q.shape
    s = scale.float()
    if s.numel() == 1:
        s = s.reshape(())
    elif s.ndim == 1 and s.shape[0] == n or s.ndim == 2 and tuple(s.shape) == (n, 1):
        s = s.reshape(n, 1)
    elif s.ndim == 2:  # block-wise scales (DeepSeek-style weight_scale_inv)
        bn, bk = -(-n // s.shape[0]), -(-k // s.shape[1])
        s = s.repeat_interleave(bn, 0)[:n].repeat_interleave(bk, 1)[:, :k]
    else:
        raise ValueError(f"FP8 scale of shape {tuple(scale.shape)} does not fit a weight of "
                         f"shape {(n, k)}")
    return (q.float() * s).to(dtype)


def to_scheme(w: torch.Tensor, scale: torch.Tensor | None, scheme: Scheme
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """A checkpoint's weight ``(N, K)`` in any dtype, with its scale (FP8 only; ``None`` = 1)
    -> ``(fp8, scale)`` in ``scheme``. FP8 bits are kept whenever the scale's granularity
    allows (a per-tensor scale also serves per channel); otherwise dequantize and requantize."""
    n = w.shape[0]
    if w.dtype == FP8:
        s = torch.ones((), device=w.device) if scale is None else scale.float().to(w.device)
        if s.numel() == 1:
            s = s.reshape(())
            return w, (s if scheme == "per_tensor" else s.expand(n, 1).clone())
        if scheme == "per_channel" and s.numel() == n and s.shape[0] == n:
            return w, s.reshape(n, 1)
        w = dequantize_weight(w, s, torch.float32)
    return quantize_weight(w, scheme)


@functools.lru_cache(maxsize=None)
def _probe_fp8_matmul(device_type: str, index: int | None) -> bool:
    if device_type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(index) >= (8, 9)


# A constant for torch.compile: traced once, no graph break inside a compiled block.
@torch.compiler.assume_constant_result
def has_fp8_matmul(device: torch.device) -> bool:
    """FP8 tensor-core matmuls: CUDA compute capability 8.9 (Ada) or 9.0+ (Hopper, Blackwell)."""
    return _probe_fp8_matmul(device.type, device.index)


def quantize_activation(x: torch.Tensor, act_scale: ActScale
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, K)`` -> ``(fp8 (M, K), float32 scale (M, 1) or ())``, dynamic (absmax of this call).
    A plain function so that a ``torch.compile`` of the caller fuses it into one pass."""
    if act_scale == "per_token":
        amax = x.abs().amax(dim=1, keepdim=True).float()  # (M, 1)
    else:
        amax = x.abs().amax().float()
    scale = amax.clamp(min=_AMAX_FLOOR) / FP8_MAX
    q = (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


class FP8Linear(nn.Module):
    """``y = x W^T + b`` with W in float8_e4m3fn and float32 scales. ``bias`` stays in the
    model's dtype. ``backend``: auto (scaled_mm where the device has FP8 matrix units and the
    shape allows it, else dequant), scaled_mm (forced; also runs on CPU torch), dequant."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 scheme: Scheme = "per_channel", act_scale: ActScale | None = None,
                 backend: Backend = "auto", fast_accum: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.scheme: Scheme = scheme
        # Per-token activation scales pair with per-channel weights (both row-wise in
        # _scaled_mm); a per-tensor weight defaults to a per-tensor activation (tensor-wise).
        self.act_scale: ActScale = act_scale or ("per_token" if scheme == "per_channel"
                                                 else "per_tensor")
        self.backend: Backend = backend
        self.fast_accum = fast_accum  # Hopper's faster FP8 accumulation; tiny extra error
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=FP8,
                                                   device=device))
        scale_shape = (out_features, 1) if scheme == "per_channel" else ()
        self.register_buffer("weight_scale", torch.ones(scale_shape, dtype=torch.float32,
                                                        device=device))
        self.bias = (nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype),
                                  requires_grad=False) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, scheme: Scheme = "per_channel",
                    weight_scale: torch.Tensor | None = None, **kw) -> "FP8Linear":
        """Quantize ``linear``'s weight; a weight that is already FP8 keeps its bits, with
        ``weight_scale`` (default 1) as its scale (see ``to_scheme``)."""
        q, s = to_scheme(linear.weight.detach(), weight_scale, scheme)
        bias = linear.bias
        m = cls(linear.in_features, linear.out_features, bias is not None, scheme=scheme,
                device="meta", **kw)
        m.weight, m.weight_scale = q, s
        if bias is not None:
            m.bias = nn.Parameter(bias.detach(), requires_grad=False)
        return m

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, scheme={self.scheme}, "
                f"act_scale={self.act_scale}, backend={self.backend}")

    # nn.Module.to(dtype) / .half() cast every floating tensor, float8 included. The weight
    # and its scale must keep their dtypes (a bf16 scale alone costs 0.4 % per channel), so
    # fn sees integer views of their bits: it moves them between devices and casts nothing.
    def _apply(self, fn, recurse=True):
        w, s = self._buffers.pop("weight"), self._buffers.pop("weight_scale")
        try:
            super()._apply(fn, recurse)
        finally:
            self._buffers["weight"] = fn(w.view(torch.uint8)).view(FP8)
            self._buffers["weight_scale"] = fn(s.view(torch.int32)).view(torch.float32)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Accept a high-precision weight (quantized here, with this module's scheme), or an FP8
        # one with any scale or none (scale 1, as in plain *_fp8_e4m3fn checkpoints).
        wk, sk = prefix + "weight", prefix + "weight_scale"
        if wk in state_dict:
            state_dict[wk], state_dict[sk] = to_scheme(state_dict[wk], state_dict.get(sk),
                                                       self.scheme)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _uses_scaled_mm(self, x: torch.Tensor) -> bool:
        if self.backend == "dequant":
            return False
        shape_ok = self.in_features % _MM_MULTIPLE == 0 and self.out_features % _MM_MULTIPLE == 0
        if self.backend == "scaled_mm":
            if not shape_ok:
                raise ValueError(f"FP8Linear {self.out_features}x{self.in_features}: "
                                 f"scaled_mm needs both sizes to be multiples of {_MM_MULTIPLE}")
            return True
        return shape_ok and has_fp8_matmul(x.device) and x.dtype in (torch.bfloat16, torch.float16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._uses_scaled_mm(x):
            w = dequantize_weight(self.weight, self.weight_scale, x.dtype)
            return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (..., K) -> (M, K)
        xq, xs = quantize_activation(x2, self.act_scale)
        ws = self.weight_scale
        if xs.ndim or ws.ndim:  # row-wise: both scales as rows, (M, 1) and (1, N)
            xs = xs.expand(x2.shape[0], 1).contiguous() if xs.ndim == 0 else xs
            ws = ws.reshape(1, -1) if ws.ndim else ws.expand(1, self.out_features).contiguous()
        out_dtype = x.dtype
        # _scaled_mm fuses a bias only in the output's half-precision dtype.
        fuse = (self.bias is not None and out_dtype in (torch.bfloat16, torch.float16))
        bias = self.bias.to(out_dtype) if fuse else None
        y = torch._scaled_mm(xq, self.weight.t(), scale_a=xs, scale_b=ws, bias=bias,
                             out_dtype=out_dtype, use_fast_accum=self.fast_accum)  # (M, N)
        if self.bias is not None and not fuse:
            y = y + self.bias.to(out_dtype)
        return y.reshape(*lead, self.out_features)


# -- the module swap ---------------------------------------------------------------------------

@dataclass
class QuantReport:
    """What ``quantize_linears`` did; ``describe()`` is one line for the plan's notes."""

    scheme: str
    swapped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # nn.Linear the filter left alone
    upcast: list[str] = field(default_factory=list)  # stray FP8 tensors made high-precision
    bytes_before: int = 0  # of the swapped layers' weights
    bytes_after: int = 0  # their FP8 weights and scales

    def describe(self) -> str:
        mib = 2**20
        return (f"fp8 weights ({self.scheme}): {len(self.swapped)} linear layers, "
                f"{self.bytes_before / mib:.0f} -> {self.bytes_after / mib:.0f} MiB"
                + (f", {len(self.skipped)} kept" if self.skipped else ""))


def _tbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def quantize_linears(module: nn.Module, *, scheme: Scheme = "per_channel",
                     filter: Callable[[str, nn.Linear], bool] | None = None,
                     scales: Mapping[str, torch.Tensor] | None = None,
                     dtype: torch.dtype | None = None, **fp8_kw) -> QuantReport:
    """Replace, in place, each ``nn.Linear`` for which ``filter(name, linear)`` is true (all
    by default) by an ``FP8Linear``. Works on meta modules (quantize, then
    ``load_state_dict(assign=True)``). A Linear whose weight is already FP8 (loaded from an
    FP8 checkpoint with ``assign=True``) is wrapped as it is, with ``scales[name + ".weight"]``
    as its scale. Any other FP8 parameter left in the module is upcast once to ``dtype``.
    ``fp8_kw``: ``act_scale``, ``backend``, ``fast_accum`` of ``FP8Linear``."""
    report = QuantReport(scheme)
    scales = scales or {}
    for name, child in list(module.named_modules()):
        for cname, sub in list(child.named_children()):
            full = f"{name}.{cname}" if name else cname
            if type(sub) is not nn.Linear:
                continue
            if filter is not None and not filter(full, sub):
                report.skipped.append(full)
                continue
            report.bytes_before += _tbytes(sub.weight)
            q = FP8Linear.from_linear(sub, scheme=scheme,
                                      weight_scale=scales.get(full + ".weight"), **fp8_kw)
            report.bytes_after += _tbytes(q.weight) + _tbytes(q.weight_scale)
            setattr(child, cname, q)
            report.swapped.append(full)
    # FP8 tensors outside FP8Linear (e.g. a filtered-out head loaded from an FP8 checkpoint).
    for mname, m in module.named_modules():
        if isinstance(m, FP8Linear):
            continue
        for pname, p in list(m.named_parameters(recurse=False)):
            if p.dtype == FP8:
                key = f"{mname}.{pname}" if mname else pname
                s = scales.get(key, torch.ones((), device=p.device))
                up = (dequantize_weight(p.data, s, dtype or torch.bfloat16) if p.ndim == 2
                      else (p.data.float() * s.float()).to(dtype or torch.bfloat16))
                setattr(m, pname, nn.Parameter(up, requires_grad=p.requires_grad))
                report.upcast.append(key)
    return report


# -- community FP8 checkpoints -----------------------------------------------------------------

# Scale keys seen in FP8 checkpoints, by suffix, for a weight "<prefix>.weight":
# ComfyUI "scaled fp8" (<prefix>.scale_weight), compressed-tensors / HF (<prefix>.weight_scale),
# DeepSeek-style block scales (<prefix>.weight_scale_inv, a multiplier despite its name).
_WEIGHT_SCALE_SUFFIXES = (".scale_weight", ".weight_scale", ".weight_scale_inv")
# Static activation scales: FP8Linear computes its own per call, so these are dropped.
_INPUT_SCALE_SUFFIXES = (".scale_input", ".input_scale")
# Marker tensors that only flag the file format.
_MARKER_KEY = re.compile(r"(^|\.)scaled_fp8$")


def is_fp8_checkpoint(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(getattr(v, "dtype", None) == FP8 for v in sd.values())


def split_scales(sd: Mapping[str, torch.Tensor]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(tensors, scales)``: the checkpoint without scale and marker keys (the keys of a
    bf16 checkpoint, FP8 tensors left FP8) and ``{weight_key: float32 scale}``."""
    tensors: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if _MARKER_KEY.search(k) or k.endswith(_INPUT_SCALE_SUFFIXES):
            continue
        suffix = next((s for s in _WEIGHT_SCALE_SUFFIXES if k.endswith(s)), None)
        if suffix is not None:
            scales[k[: -len(suffix)] + ".weight"] = v.float()
            continue
        tensors[k] = v
    orphan = [k for k in scales if k not in tensors]
    if orphan:
        raise WeightsError(f"FP8 scales without a weight: {', '.join(orphan[:4])}")
    return tensors, scales


def fit_state_dict(tensors: Mapping[str, torch.Tensor], scales: Mapping[str, torch.Tensor],
                   model: nn.Module, *, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A state dict with exactly the keys of ``model.state_dict()`` (for a strict load):
    weights of ``FP8Linear``s as FP8 with ``weight_scale`` (kept bit for bit when the
    checkpoint is FP8, quantized once when it is not); every other FP8 tensor upcast once to
    ``dtype`` with its scale. Missing keys stay missing (the strict load names them)."""
    fp8_modules = {name: m for name, m in model.named_modules() if isinstance(m, FP8Linear)}
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        owner = k[: -len(".weight")] if k.endswith(".weight") else ("" if k == "weight" else None)
        m = fp8_modules.get(owner) if owner is not None else None
        if m is not None:
            out[k], s = to_scheme(v, scales.get(k), m.scheme)
            out[(owner + "." if owner else "") + "weight_scale"] = s
        elif v.dtype == FP8:
            s = scales.get(k, torch.ones((), device=v.device))
            out[k] = (dequantize_weight(v, s, dtype) if v.ndim == 2
                      else (v.float() * s.float()).to(dtype))
        else:
            out[k] = v
    return out
