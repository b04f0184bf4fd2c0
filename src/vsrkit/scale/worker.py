"""The segment worker: one model on one device, making segments on request. The same object
runs in a worker process per device (``--devices``, ``devices.py``) and in a Ray actor
(``--ray``, ``ray_runner.py``).

A worker process talks to the parent through two queues: it takes ``Segment``s (``None``: no
more) from ``tasks`` and puts tuples on ``results``:

    ("frames", worker, segment index, kept frames encoded so far)   at most every PROGRESS_EVERY s
    ("done", worker, segment index, sha256, [(pts, duration), ...])  after the file is in place
    ("error", worker, segment index or None, class name, message, traceback)
    ("exit", worker)                                                 always last

Only the parent writes the manifest and reads segment files; it reads one only after its
"done", which the worker sends after renaming the complete file into place.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from pathlib import Path

from ..progress import CancelToken
from .segments import Job, run_segment, seg_name

PROGRESS_EVERY = 0.5  # seconds between a worker's progress messages


class SegmentMaker:
    """One model copy on ``device``; loads its weights once (at the first segment) and keeps
    them for every later segment."""

    def __init__(self, job: Job, device: str):
        from .. import engines

        self.job = job.on_device(device)
        self.engine = engines.create(self.job.opts)

    def make(self, seg, dest: Path, cancel: CancelToken | None = None, on_kept=None
             ) -> tuple[str, list]:
        return run_segment(self.job, seg, self.engine, dest, cancel, on_kept)

    def close(self) -> None:
        self.engine.close()


class WorkerFailed(RuntimeError):
    """A worker hit something that is not a user-facing error (a bug): carries its traceback."""


class _StopToken(CancelToken):
    """Cancelled when the parent sets ``stop`` or is gone (killed: nobody would read us)."""

    def __init__(self, stop, parent_pid: int):
        super().__init__()
        self._stop, self._parent = stop, parent_pid
        self.reason = "stopped by the parent"

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set() or os.getppid() != self._parent


def worker_main(worker: int, device: str, job: Job, folder: str, tasks, results, stop,
                parent_pid: int, threads: int | None) -> None:
    """Body of a worker process (spawned: a fresh interpreter, its own GIL and CUDA context)."""
    # Ctrl-C reaches the whole process group; the parent decides and tells us through ``stop``.
    # We start with SIGINT blocked (devices._start_with_sigint_blocked): ignoring it first
    # discards one that is pending, unblocking after makes the mask ordinary again.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if threads:
        import torch

        torch.set_num_threads(threads)
    cancel = _StopToken(stop, parent_pid)
    seg = None
    try:
        maker = SegmentMaker(job, device)
        while not cancel.cancelled:
            seg = tasks.get()
            if seg is None:
                break
            last = [0.0]

            def on_kept(n: int, index: int = seg.index) -> None:
                now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY:
                    last[0] = now
                    results.put(("frames", worker, index, n))

            digest, pts = maker.make(seg, Path(folder) / seg_name(seg.index), cancel, on_kept)
            results.put(("done", worker, seg.index, digest, pts))
            seg = None
    except KeyboardInterrupt:  # cancelled: the segment file was not made, nothing to report
        pass
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("error", worker, seg.index if seg is not None else None, type(e).__name__,
                     str(e), traceback.format_exc()))
    finally:
        if os.getppid() != parent_pid:
            results.cancel_join_thread()  # nobody reads: do not wait to flush at exit
        results.put(("exit", worker))


def rebuild_error(name: str, message: str, tb: str, where: str) -> BaseException:
    """A worker's error, raised again in the parent: vsrkit's own errors as themselves (one
    line for the user), anything else as WorkerFailed with the worker's traceback."""
    from .. import errors

    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.VsrkitError) \
            and cls is not errors.Interrupted:
        return cls(f"{where}: {message}")
    return WorkerFailed(f"{where}: {name}: {message}\nworker traceback:\n{tb}")
