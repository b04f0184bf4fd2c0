"""Temporal batches of a stream, as pure arithmetic (no tensors).

The official scripts run a whole clip in one DiT call (memory grows with its length). Here a
stream is cut into batches of ``length`` = 4n+1 frames starting every ``stride = length -
overlap`` frames; at the end of the stream the last batch is the last ``length`` frames (never a
short batch, which the model handles badly), overlapping its predecessor by more. A stream shorter
than ``length`` is one batch of all its frames (padded to 4n+1 inside, as the official code).
Overlapping outputs are blended with a linear ramp (``ramp``).
"""

from __future__ import annotations


def pad_4n1(n: int) -> int:
    """Frames the VAE sees for a batch of n: 1 stays 1 (an image), 2..4 -> 5, else next 4n+1."""
    if n <= 1:
        return n
    return max(5, n + (-(n - 1)) % 4)


def latent_start(frame: int) -> int:
    """Index on the whole video's latent timeline of the latent holding ``frame`` when it starts
    a batch (frame 0 -> latent 0, frames 4k-3..4k -> latent k)."""
    return -(-frame // 4)


def regular_start(k: int, stride: int) -> int:
    return k * stride


def final_start(n_frames: int, length: int) -> int:
    return max(0, n_frames - length)


def ramp(n: int) -> list[float]:
    """Weights of the newer batch over an overlap of n frames: 1/(n+1) .. n/(n+1)."""
    return [(i + 1) / (n + 1) for i in range(n)]


def plan_batches(n_frames: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """All batches ``(start, stop)`` of a stream of known length (what the session does while
    streaming); every frame is covered."""
    stride = length - overlap
    out = []
    k = 0
    while regular_start(k, stride) + length <= n_frames:
        out.append((regular_start(k, stride), regular_start(k, stride) + length))
        k += 1
    covered = out[-1][1] if out else 0
    if covered < n_frames:
        s = final_start(n_frames, length)
        out.append((s, n_frames))
    return out
