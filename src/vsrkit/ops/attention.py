"""One dispatch for block-sparse attention: 128x128 blocks, a boolean block mask per head, and a
query block with no selected key block written as zeros (the semantics of
mit-han-lab/Block-Sparse-Attention). Backends: ``reference`` (exact, plain PyTorch, any device)
and ``flex`` (PyTorch FlexAttention, CUDA, no compilation at install time)."""

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


# Compiled on its own and kept out of any enclosing torch.compile graph (the DiT blocks are
# compiled whole): inlined there, inductor picks a FlexAttention config needing more shared
# memory than an H100 has (262144 > 232448 bytes) and the compile fails.
@torch.compiler.disable
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


def pick_attention(name: str, device) -> str:
    """auto: FlexAttention on CUDA, the exact reference elsewhere; an explicit choice that
    cannot run is an error, never a silent fallback."""
    dev = torch.device(device)
    if name == "auto":
        return "flex" if dev.type == "cuda" else "reference"
    if name not in ATTENTION:
        from ..errors import UsageError

        raise UsageError(f"--attention {name!r}: FlashVSR offers {', '.join(ATTENTION)} or auto")
    if name == "flex" and dev.type != "cuda":
        from ..errors import UsageError

        raise UsageError("--attention flex needs a CUDA device")
    return name
