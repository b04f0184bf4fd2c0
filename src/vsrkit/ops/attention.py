"""The attention dispatch both models share, each kind with an exact reference backend.

* Block-sparse attention (FlashVSR): 128x128 blocks, a boolean block mask per head, and a query
  block with no selected key block written as zeros (the semantics of
  mit-han-lab/Block-Sparse-Attention). Backends: ``reference`` (exact, plain PyTorch, any
  device) and ``flex`` (PyTorch FlexAttention, CUDA, no compilation at install time).
* Variable-length attention (SeedVR2's windows): independent sequences packed back to back.
  Backends: ``reference`` (one SDPA per sequence), ``sdpa`` (equal lengths batched) and
  ``flash_attn`` (flash-attn's varlen kernel when installed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sparse_attention_reference(q, k, v, mask, heads: int) -> torch.Tensor:
    """Exact semantics of the block-sparse kernel in plain PyTorch: q (nq, 128, D), k/v
    (nk, 128, D), mask (heads, nq, nk). Query windows with no key window get zeros."""
    nq, bs, D = q.shape
    nk = k.shape[0]
    d = D // heads
    qh = q.reshape(nq * bs, heads, d).transpose(0, 1)  # (Hd, Lq, d)
    kh = k.reshape(nk * bs, heads, d).transpose(0, 1)
    vh = v.reshape(nk * bs, heads, d).transpose(0, 1)
    tok = mask.repeat_interleave(bs, 1).repeat_interleave(bs, 2)  # (Hd, Lq, Lk)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=tok)
    empty = ~mask.any(-1).repeat_interleave(bs, 1)  # (Hd, Lq)
    out = out.masked_fill(empty[..., None], 0.0)
    return out.transpose(0, 1).reshape(nq, bs, D)


_FLEX = None


def sparse_attention_flex(q, k, v, mask, heads: int) -> torch.Tensor:
    """The same block-sparse attention through PyTorch FlexAttention (CUDA): the block mask
    becomes a BlockMask of 128x128 full blocks, so only selected key windows are computed."""
    global _FLEX
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    if _FLEX is None:
        _FLEX = torch.compile(flex_attention, dynamic=False)
    nq, bs, D = q.shape
    nk = k.shape[0]
    d = D // heads
    qh = q.reshape(nq * bs, heads, d).transpose(0, 1)[None]  # (1, Hd, Lq, d)
    kh = k.reshape(nk * bs, heads, d).transpose(0, 1)[None]
    vh = v.reshape(nk * bs, heads, d).transpose(0, 1)[None]
    counts = mask.sum(-1, dtype=torch.int32)[None]  # (1, Hd, nq)
    order = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True).to(torch.int32)[None]
    empty = torch.zeros_like(counts)

    def in_selected_block(b, h, qi, ki):  # the same mask token-wise (eager/unfused paths use it)
        return mask[h, qi // bs, ki // bs]

    # selected blocks as *full* blocks: the fused kernel visits only those and skips the mask_mod
    bm = BlockMask.from_kv_blocks(empty, order, counts, order, BLOCK_SIZE=bs,
                                  mask_mod=in_selected_block, seq_lengths=(nq * bs, nk * bs))
    out = _FLEX(qh, kh, vh, block_mask=bm)  # rows with no block come out as zeros
    return out[0].transpose(0, 1).reshape(nq, bs, D)


ATTENTION = {"reference": sparse_attention_reference, "flex": sparse_attention_flex}


def _flex_outside_graphs() -> None:
    """FlexAttention is compiled on its own and kept out of any enclosing torch.compile graph
    (the DiT blocks are compiled whole): inlined there, inductor picks a config needing more
    shared memory than an H100 has (262144 > 232448 bytes) and the compile fails. Done when
    flex is picked, not at import: ``torch.compiler.disable`` imports dynamo (~5 s)."""
    if not getattr(ATTENTION["flex"], "_outside_graphs", False):
        fn = torch.compiler.disable(sparse_attention_flex)
        fn._outside_graphs = True
        ATTENTION["flex"] = fn


def pick_attention(name: str, device) -> str:
    """auto: FlexAttention on CUDA, the exact reference elsewhere; an explicit choice that
    cannot run is an error, never a silent fallback."""
    dev = torch.device(device)
    if name == "auto":
        name = "flex" if dev.type == "cuda" else "reference"
    if name not in ATTENTION:
        from ..errors import UsageError

        raise UsageError(f"--attention {name!r}: FlashVSR offers {', '.join(ATTENTION)} or auto")
    if name == "flex" and dev.type != "cuda":
        from ..errors import UsageError

        raise UsageError("--attention flex needs a CUDA device")
    return name


# -- variable-length attention: independent sequences packed back to back ----------------------
#
# SeedVR2 attends within 3D windows of several sizes, each with its own copy of the text. The
# windows are packed along dim 0 as rows (N, heads, d); ``Packed`` describes the cut. Backends:
# ``reference`` (one SDPA per sequence: exact, any device), ``sdpa`` (sequences of one length
# batched into one SDPA call, PyTorch's flash/efficient kernel on CUDA) and ``flash_attn``
# (``flash_attn_varlen_func``, one call for all, when the package is installed).


class Packed:
    """Cut of a packed sequence tensor. ``lengths`` in packing order (host ints), ``cu`` the
    (n+1,) int32 offsets on the device, ``runs`` the consecutive sequences of equal length as
    (first row, count, length): pack sequences of one length together and each run is a view."""

    def __init__(self, lengths, device):
        self.lengths = tuple(int(n) for n in lengths)
        offs = [0]
        for n in self.lengths:
            offs.append(offs[-1] + n)
        self.offsets = offs
        self.total = offs[-1]
        self.max_len = max(self.lengths) if self.lengths else 0
        self.cu = torch.tensor(offs, dtype=torch.int32, device=device)
        self.runs: list[tuple[int, int, int]] = []
        for i, n in enumerate(self.lengths):
            if self.runs and self.runs[-1][2] == n:
                a, c, _ = self.runs[-1]
                self.runs[-1] = (a, c + 1, n)
            else:
                self.runs.append((offs[i], 1, n))


def varlen_reference(q, k, v, p: Packed) -> torch.Tensor:
    """q, k, v (N, heads, d) -> (N, heads, d): one non-causal SDPA (scale 1/sqrt(d)) per sequence."""
    out = torch.empty_like(q)
    for a, n in zip(p.offsets, p.lengths):
        s = slice(a, a + n)
        out[s] = F.scaled_dot_product_attention(
            q[s].transpose(0, 1), k[s].transpose(0, 1), v[s].transpose(0, 1)).transpose(0, 1)
    return out


def varlen_sdpa(q, k, v, p: Packed) -> torch.Tensor:
    """The same, one batched SDPA per run of equal-length sequences ((count, heads, L, d) views)."""
    out = torch.empty_like(q)
    H, d = q.shape[1:]
    for a, c, n in p.runs:
        s = slice(a, a + c * n)
        qs, ks, vs = (t[s].view(c, n, H, d).transpose(1, 2) for t in (q, k, v))
        out[s] = F.scaled_dot_product_attention(qs, ks, vs).transpose(1, 2).reshape(c * n, H, d)
    return out


def varlen_flash(q, k, v, p: Packed) -> torch.Tensor:
    """flash-attn's varlen kernel: every sequence in one call (fp16/bf16 on CUDA)."""
    from flash_attn import flash_attn_varlen_func

    return flash_attn_varlen_func(q, k, v, p.cu, p.cu, p.max_len, p.max_len)


VARLEN = {"reference": varlen_reference, "sdpa": varlen_sdpa, "flash_attn": varlen_flash}


def has_flash_attn() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken build counts as absent
        return False
    return True


def pick_varlen(name: str, device, dtype: torch.dtype) -> str:
    """auto: flash-attn's varlen kernel on CUDA in fp16/bf16 when installed, batched SDPA on
    CUDA otherwise, the exact per-sequence reference elsewhere. An explicit choice that cannot
    run is an error, never a silent fallback."""
    from ..errors import UsageError

    dev = torch.device(device)
    half = dtype in (torch.float16, torch.bfloat16)
    if name == "auto":
        if dev.type != "cuda":
            return "reference"
        return "flash_attn" if half and has_flash_attn() else "sdpa"
    if name not in VARLEN:
        raise UsageError(f"--attention {name!r}: SeedVR2 offers {', '.join(VARLEN)} or auto")
    if name == "flash_attn":
        if not has_flash_attn():
            raise UsageError("--attention flash_attn: the flash-attn package is not installed "
                             "(pip install flash-attn), or use --attention sdpa")
        if dev.type != "cuda" or not half:
            raise UsageError("--attention flash_attn needs a CUDA device and --dtype bf16 or fp16")
    return name
