"""``--ray ADDRESS|auto``: segments as tasks on Ray actors (one GPU each where there are GPUs,
the model loaded once per actor: the same ``worker.SegmentMaker`` a --devices worker process
runs). An actor that sees the work folder (same machine, shared storage) writes its segment
files there; any other returns each file's bytes, so workers need no storage shared with the
driver. The driver checks each file's checksum, marks it in the manifest and appends it to
the output in order. A segment whose actor dies is given to a fresh
actor (up to ``MAX_TRIES``). Ray is optional: ``pip install vsrkit[ray]``."""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from ..errors import ResourceError, UsageError, VsrkitError
from ..progress import Event
from .segments import seg_name, sha256

MAX_TRIES = 3
TOKEN = "ray-token"  # a file in the work folder: actors that read the driver's token share it


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


def cluster_workers(address: str) -> int:
    """Actors a run starts: one per GPU of the cluster, else one per CPU."""
    ray = _ray()
    connect(address)
    res = ray.cluster_resources()
    return int(res.get("GPU", 0)) or max(1, int(res.get("CPU", 1)))


class SegmentWorker:
    """A Ray actor around the one segment worker (``worker.SegmentMaker``): one model copy,
    its GPU (or a CPU), segments on request, each returned as its file's bytes."""

    def __init__(self, job):
        import torch

        from .worker import SegmentMaker

        self.maker = SegmentMaker(job, "cuda" if torch.cuda.is_available() else "cpu")

    def make(self, seg, folder: str, token: str) -> tuple[bytes | None, str, list]:
        """The segment's file written straight into the work folder when this actor sees the
        driver's (same machine or shared storage: the folder holds the driver's token), else
        its bytes, which the driver writes."""
        shared = Path(folder)
        try:
            shared = shared if (shared / TOKEN).read_text() == token else None
        except OSError:
            shared = None
        if shared is not None:
            digest, pts = self.maker.make(seg, shared / seg_name(seg.index))
            return None, digest, pts
        with tempfile.TemporaryDirectory() as d:
            dest = Path(d) / seg_name(seg.index)
            digest, pts = self.maker.make(seg, dest)
            return dest.read_bytes(), digest, pts

    def pid(self) -> int:
        import os

        return os.getpid()


def run_on_ray(job, todo, folder: Path, address: str, tracker, cancel,
               n_workers: int | None = None, on_actors=None) -> None:
    ray = _ray()
    connect(address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    n = n_workers or cluster_workers(address)
    opts = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    Actor = ray.remote(**opts)(SegmentWorker)
    actors = [Actor.remote(job) for _ in range(min(n, max(1, len(todo))))]
    if on_actors is not None:
        on_actors(actors)
    token = secrets.token_hex(8)
    (folder / TOKEN).write_text(token)
    pending = list(todo)
    tries = {s.index: 0 for s in todo}
    running: dict = {}  # ObjectRef -> (segment, actor)
    idle = list(actors)
    try:
        while (pending or running) and not cancel.cancelled:
            while pending and idle:
                seg, actor = pending.pop(0), idle.pop(0)
                running[actor.make.remote(seg, str(folder), token)] = (seg, actor)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            for ref in ready:
                seg, actor = running.pop(ref)
                try:
                    data, digest, pts = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                    tries[seg.index] += 1
                    if tries[seg.index] >= MAX_TRIES:
                        raise ResourceError(f"segment {seg.index + 1} failed {MAX_TRIES} times "
                                            f"on Ray ({type(e).__name__})") from None
                    tracker.emit(Event("upscaling", tracker.done, tracker.total,
                                       message=f"segment {seg.index + 1}: worker lost, "
                                       "retrying elsewhere"))
                    pending.insert(0, seg)
                    idle.append(Actor.remote(job))  # a fresh actor replaces the dead one
                    continue
                except ray.exceptions.RayTaskError as e:  # the worker raised: say it as itself
                    cause = e.cause if isinstance(e.cause, BaseException) else None
                    if cause is not None and isinstance(cause, VsrkitError):
                        raise type(cause)(f"segment {seg.index + 1}/{tracker.count} on Ray: "
                                          f"{cause}") from None
                    raise
                dest = folder / seg_name(seg.index)
                if data is not None:  # an actor that does not see the work folder
                    tmp = dest.with_name(dest.name + ".part")
                    tmp.write_bytes(data)
                    tmp.replace(dest)
                if sha256(dest) != digest:
                    raise ResourceError(f"segment {seg.index + 1}: checksum mismatch after "
                                        "transfer")
                tracker.finished(seg, digest, pts, where="Ray")
                idle.append(actor)
    finally:
        for a in actors + idle:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
