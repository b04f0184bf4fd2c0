"""Tiny random FlashVSR checkpoints in the official file layout (names, keys, formats)."""

from pathlib import Path

import torch


def make_tiny_flashvsr(folder, seed: int = 0, dim: int = 256, layers: int = 2,
                       vae: bool = False) -> Path:
    """The files of tiny and tiny-long; with ``vae`` also full's ``Wan2.1_VAE.pth`` (width 4)."""
    from safetensors.torch import save_file

    from vsrkit.engines.flashvsr.dit import DiTConfig, WanDiT
    from vsrkit.engines.flashvsr.lq_proj import LQProjector
    from vsrkit.engines.flashvsr.tcdecoder import TCDecoder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)

    def rand(module, scale=0.05):
        sd = {}
        for k, v in module.state_dict().items():
            if k.endswith("gamma") or k.endswith("norm_q.weight") or k.endswith("norm_k.weight") \
                    or k.endswith("norm3.weight"):
                sd[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
            elif k.endswith("modulation"):
                sd[k] = 0.1 * torch.randn(v.shape, generator=g)
            else:
                fan = max(1, v[0].numel()) if v.ndim > 1 else 64
                sd[k] = torch.randn(v.shape, generator=g) / fan ** 0.5
        return sd

    cfg = DiTConfig(dim=dim, in_dim=16, ffn_dim=2 * dim, text_dim=64, freq_dim=256,
                    num_layers=layers, out_dim=16, num_heads=dim // 128)
    save_file({k: v.contiguous() for k, v in rand(WanDiT(cfg)).items()},
              str(folder / "diffusion_pytorch_model_streaming_dmd.safetensors"))
    torch.save(rand(LQProjector(3, 64, 96, dim, causal=True)), folder / "LQ_proj_in.ckpt")
    torch.save(rand(TCDecoder([64, 32, 16, 16])), folder / "TCDecoder.ckpt")
    torch.save(torch.randn(1, 16, 64, generator=g), folder / "posi_prompt.pth")
    if vae:
        torch.save(make_tiny_wan_vae(seed, dim=4), folder / "Wan2.1_VAE.pth")
    return folder


def make_tiny_wan_vae(seed: int = 0, dim: int = 8) -> dict:
    """A random Wan2.1 VAE state dict at width ``dim`` (published: 96), every key of the file.

    Convolutions get fan-in scaled weights and a residual branch small enough that the decoded
    frames stay mostly inside [-1, 1] (the decoder clamps; saturated pixels would test nothing).
    """
    from vsrkit.engines.flashvsr.wan_vae import WanVAE, WanVAEConfig

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in WanVAE(WanVAEConfig(dim=dim)).state_dict().items():
        if k.endswith("gamma"):
            sd[k] = 1 + 0.1 * torch.randn(v.shape, generator=g)
        elif v.ndim > 1:
            sd[k] = torch.randn(v.shape, generator=g) / v[0].numel() ** 0.5
        else:
            sd[k] = 0.05 * torch.randn(v.shape, generator=g)
    return sd
