"""``--ray ADDRESS|auto``: segments as tasks on Ray actors (one GPU each where there are GPUs,
the model loaded once per actor). Each actor returns its segment file's bytes, so workers need
no storage shared with the driver; the driver writes them into the work folder, marks them in
the manifest, and assembles the output in order. A segment whose actor dies is given to a fresh
actor (up to ``MAX_TRIES``). Ray is optional: ``pip install vsrkit[ray]``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import ResourceError, UsageError
from ..progress import Event
from .segments import run_segment, seg_name, sha256

MAX_TRIES = 3


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'vsrkit[ray]'") from None
    return ray


def connect(address: str) -> None:
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True,
                 log_to_driver=False)
    except ConnectionError as e:
        raise ResourceError(f"--ray {address}: cannot reach a Ray cluster ({e})") from None


class SegmentWorker:
    """One model copy; makes segments on request."""

    def __init__(self, job):
        import torch

        from .. import engines

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.job = type(job)(**{**job.__dict__, "opts": job.opts.replace(
            device=device, ray=None, devices=None)})
        self.engine = engines.create(self.job.opts)

    def make(self, seg) -> tuple[bytes, str, list]:
        with tempfile.TemporaryDirectory() as d:
            dest = Path(d) / seg_name(seg.index)
            digest, pts = run_segment(self.job, seg, self.engine, dest)
            return dest.read_bytes(), digest, pts

    def pid(self) -> int:
        import os

        return os.getpid()


def run_on_ray(job, todo, manifest, address: str, emit, cancel, total: int,
               n_workers: int | None = None, on_actors=None, on_done=None) -> None:
    ray = _ray()
    connect(address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    n = n_workers or (gpus if gpus else max(1, min(len(todo), cpus)))
    opts = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    Actor = ray.remote(**opts)(SegmentWorker)
    actors = [Actor.remote(job) for _ in range(min(n, max(1, len(todo))))]
    if on_actors is not None:
        on_actors(actors)
    pending = list(todo)
    tries = {s.index: 0 for s in todo}
    running: dict = {}  # ObjectRef -> (segment, actor)
    done = total - sum(s.kept for s in todo)
    idle = list(actors)
    while (pending or running) and not cancel.cancelled:
        while pending and idle:
            seg, actor = pending.pop(0), idle.pop(0)
            running[actor.make.remote(seg)] = (seg, actor)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
        for ref in ready:
            seg, actor = running.pop(ref)
            try:
                data, digest, pts = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                tries[seg.index] += 1
                if tries[seg.index] >= MAX_TRIES:
                    raise ResourceError(f"segment {seg.index} failed {MAX_TRIES} times on Ray "
                                        f"({type(e).__name__})") from None
                emit(Event("upscaling", done, total,
                           message=f"segment {seg.index}: worker lost, retrying elsewhere"))
                pending.insert(0, seg)
                idle.append(Actor.remote(job))  # a fresh actor replaces the dead one
                continue
            dest = manifest.folder / seg_name(seg.index)
            tmp = dest.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(dest)
            if sha256(dest) != digest:
                raise ResourceError(f"segment {seg.index}: checksum mismatch after transfer")
            manifest.mark_done(seg.index, (digest, pts))
            if on_done is not None:
                on_done()
            done += seg.kept
            idle.append(actor)
            emit(Event("upscaling", done, total, message=f"segment {seg.index} done"))
    for a in actors + idle:
        try:
            ray.kill(a)
        except Exception:  # noqa: BLE001 - already gone
            pass
