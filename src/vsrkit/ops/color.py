"""Color correction of model output against the (upsampled) input, shared by the engines.
Frames are (T, 3, H, W) in [-1, 1]; results are clamped to [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UsageError

METHODS = ("none", "adain", "wavelet", "wavelet_adaptive", "lab", "hsv")


def adain(out: torch.Tensor, ref: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per frame and channel, out's mean/std replaced by ref's (biased variance + eps), as
    FlashVSR's official 'adain'."""
    mo, vo = out.mean((-2, -1), keepdim=True), out.var((-2, -1), keepdim=True, unbiased=False)
    mr, vr = ref.mean((-2, -1), keepdim=True), ref.var((-2, -1), keepdim=True, unbiased=False)
    return ((out - mo) / torch.sqrt(vo + eps) * torch.sqrt(vr + eps) + mr).clamp(-1, 1)


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """[1,2,1]^T[1,2,1]/16 with the given dilation and replicate padding, per channel."""
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    k = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    x = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(x, k, dilation=dilation, groups=x.shape[1])


def _split(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low): low after `levels` dilated blurs (dilation 2^i), high the sum of what each
    blur removed."""
    high = torch.zeros_like(x)
    low = x
    for i in range(levels):
        blurred = _blur(low, 2 ** i)
        high = high + (low - blurred)
        low = blurred
    return high, low


def wavelet(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The output's high frequencies on the reference's low frequencies (5 levels)."""
    high, _ = _split(out.float())
    _, low = _split(ref.float())
    return (high + low).clamp(-1, 1).to(out.dtype)


# -- histogram methods (the ComfyUI SeedVR2 node's lab / hsv / wavelet_adaptive) ---------------
# Its histograms pool every frame of a call; here each frame is matched on its own, so a result
# does not depend on how a stream is cut into batches.


def _match(src: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """1-D quantile mapping: src's values replaced by ref's at the same rank."""
    order = torch.argsort(src)
    ref_sorted = torch.sort(ref).values
    if ref.numel() != src.numel():
        q = torch.linspace(0, 1, src.numel(), device=src.device)
        ref_sorted = ref_sorted[(q * (ref.numel() - 1)).long().clamp(0, ref.numel() - 1)]
    out = torch.empty_like(src)
    out[order] = ref_sorted
    return out


_RGB2XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750),
            (0.0193339, 0.1191920, 0.9503041))
_XYZ2RGB = ((3.2404542, -1.5371385, -0.4985314), (-0.9692660, 1.8760108, 0.0415560),
            (0.0556434, -0.2040259, 1.0572252))
_WHITE = (0.95047, 1.0, 1.08883)  # D65
_EPS = 6.0 / 29.0
_KAPPA = (29.0 / 3.0) ** 3


def _rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) sRGB in [0, 1] -> CIELAB (L in [0, 100])."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor(_RGB2XYZ, dtype=rgb.dtype, device=rgb.device)
    xyz = torch.einsum("ij,tjhw->tihw", m, lin)
    xyz = xyz / torch.tensor(_WHITE, dtype=rgb.dtype, device=rgb.device)[:, None, None]
    f = torch.where(xyz > _EPS ** 3, xyz.clamp(min=0) ** (1 / 3), (xyz * _KAPPA + 16) / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def _lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([lab[:, 1] / 500 + fy, fy, fy - lab[:, 2] / 200], 1)
    xyz = torch.where(f > _EPS, f ** 3, (f * 116 - 16) / _KAPPA)
    xyz = xyz * torch.tensor(_WHITE, dtype=lab.dtype, device=lab.device)[:, None, None]
    m = torch.tensor(_XYZ2RGB, dtype=lab.dtype, device=lab.device)
    lin = torch.einsum("ij,tjhw->tihw", m, xyz)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp(min=0) ** (1 / 2.4) - 0.055, lin * 12.92)
    return rgb.clamp(0, 1)


def lab(out: torch.Tensor, ref: torch.Tensor, luminance_weight: float = 0.8) -> torch.Tensor:
    """Wavelet first, then per-frame histogram matching in CIELAB: a* and b* fully, L* blended
    (0.8 of the output's own lightness kept), as the ComfyUI node's default."""
    base = wavelet(out.float(), ref.float())
    lo, lr = _rgb_to_lab((base + 1) / 2), _rgb_to_lab(((ref.float() + 1) / 2).clamp(0, 1))
    res = lo.clone()
    for t in range(lo.shape[0]):
        for c in range(3):
            m = _match(lo[t, c].flatten(), lr[t, c].flatten()).view_as(lo[t, c])
            res[t, c] = m if c else lo[t, c] * luminance_weight + m * (1 - luminance_weight)
    return (_lab_to_rgb(res) * 2 - 1).to(out.dtype)


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(1)
    mx, mn = rgb.max(1).values, rgb.min(1).values
    rng = mx - mn
    safe = torch.where(rng > 1e-10, rng, torch.ones_like(rng))
    h = torch.where(mx == r, ((g - b) / safe) % 6, torch.where(mx == g, (b - r) / safe + 2,
                                                               (r - g) / safe + 4))
    h = torch.where(rng > 1e-10, h, torch.zeros_like(h)) / 6
    s = torch.where(mx > 1e-10, rng / mx.clamp(min=1e-10), torch.zeros_like(mx))
    return torch.stack([h, s, mx], 1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    h, s, v = hsv[:, 0] * 6, hsv[:, 1], hsv[:, 2]
    i = torch.floor(h).long() % 6
    f = h - torch.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack([torch.stack(c, 1) for c in
                         ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return torch.gather(table, 0, i[None, :, None].expand(1, -1, 3, *i.shape[1:]))[0]


HUE_BINS, MIN_PIXELS = 12, 100


def hsv(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Saturation histogram matched per hue bin (12 bins of 30 degrees), hue and value kept."""
    ho = _rgb_to_hsv(((out.float() + 1) / 2).clamp(0, 1))
    hr = _rgb_to_hsv(((ref.float() + 1) / 2).clamp(0, 1))
    s = ho[:, 1].clone()
    w = 1.0 / HUE_BINS
    for t in range(ho.shape[0]):
        for k in range(HUE_BINS):
            def mask(hh):
                return ((hh < w) | (hh >= 1 - w)) if k == 0 else ((hh >= k * w) & (hh < (k + 1) * w))
            mo, mr = mask(ho[t, 0]), mask(hr[t, 0])
            if mo.sum() > MIN_PIXELS and mr.sum() > MIN_PIXELS:
                s[t][mo] = _match(ho[t, 1][mo], hr[t, 1][mr])
    res = torch.stack([ho[:, 0], s, ho[:, 2]], 1)
    return (_hsv_to_rgb(res).clamp(0, 1) * 2 - 1).to(out.dtype)


def _saturation(x: torch.Tensor) -> torch.Tensor:
    rgb = ((x + 1) / 2).clamp(0, 1)
    mx, mn = rgb.max(1, keepdim=True).values, rgb.min(1, keepdim=True).values
    return torch.where(mx > 1e-10, (mx - mn) / mx.clamp(min=1e-10), torch.zeros_like(mx))


def wavelet_adaptive(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Wavelet, with the hsv correction blended in (sigmoid of the saturation excess over the
    reference, threshold 0.15, sharpness 5) where the wavelet result stays oversaturated."""
    o, r = out.float(), ref.float()
    wv, hs = wavelet(o, r), hsv(o, r)
    s_ref = _saturation(r)
    blend = torch.sigmoid(5.0 * (_saturation(o) - s_ref - 0.15))
    blend = (blend * ((_saturation(wv) - s_ref) > 0.075).float()).clamp(0, 1)
    return (wv * (1 - blend) + hs * blend).to(out.dtype)


def color_fix(out: torch.Tensor, ref: torch.Tensor, method: str) -> torch.Tensor:
    """(T, 3, H, W) output and reference in [-1, 1]; the result is clamped to [-1, 1]."""
    if method == "none":
        return out
    if method == "adain":
        return adain(out.float(), ref.float()).to(out.dtype)
    if method == "wavelet":
        return wavelet(out, ref)
    if method == "wavelet_adaptive":
        return wavelet_adaptive(out, ref)
    if method == "lab":
        return lab(out, ref)
    if method == "hsv":
        return hsv(out, ref)
    raise UsageError(f"--color-fix {method}: available here: {', '.join(METHODS)}")
