"""``--devices cuda:0,cuda:1|all``: segments in parallel on one machine, one worker process per
device (``worker.worker_main``: its own interpreter, so no GIL, decode or encode is shared; the
model loaded once per process), taking segments from one queue. The parent (this module) only
collects: it marks segments done, appends them to the output in order and reports progress
(``segments.Tracker``).

A device may be named more than once (``cpu,cpu``: two CPU workers, which is how the tests run
several workers without GPUs; ``cuda:0,cuda:0`` runs two model copies on one GPU).
"""

from __future__ import annotations

import os
import queue
import signal
import time

from ..errors import ResourceError, UsageError, VsrkitError
from .worker import rebuild_error, worker_main

GRACE_SECONDS = 10.0  # a stopped worker finishes its current frame within this, or is ended
LOST_AFTER = 1.0  # seconds a dead worker's last messages may still be in flight


def parse_devices(text: str) -> list[str]:
    """``all`` (every CUDA GPU) or a comma list; each device is checked before any work."""
    import torch

    from ..devices import pick_device

    if text == "all":
        n = torch.cuda.device_count()
        if n == 0:
            raise ResourceError("--devices all: no CUDA device on this machine")
        return [f"cuda:{i}" for i in range(n)]
    devs = [d.strip() for d in text.split(",") if d.strip()]
    if not devs:
        raise UsageError(f"--devices {text!r}: expected cuda:0,cuda:1 or all")
    for d in devs:
        if d == "auto":
            raise UsageError("--devices: name the devices (cuda:0,cuda:1) or give all")
        try:
            pick_device(d)
        except VsrkitError as e:  # said as the option the user gave
            raise type(e)(str(e).replace("--device ", "--devices ", 1)) from None
    return devs


def _cpu_threads(devices: list[str]) -> int | None:
    """CPU workers share the cores instead of each starting one thread per core, unless the
    user set ``OMP_NUM_THREADS`` (each worker's torch then takes that). The thread count moves
    float32 results by ~1e-5 (another summation order), which can flip an 8-bit level: runs
    compared across layouts need the same count in every worker."""
    n = sum(d == "cpu" for d in devices)
    if not n or os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, (os.cpu_count() or 1) // n)


def _start_with_sigint_blocked(procs) -> None:
    """Start the workers with SIGINT blocked from their first instruction: a terminal's Ctrl-C
    reaches the whole process group, and a worker still importing would die of it with a
    traceback. A blocked signal stays blocked across fork and exec; the worker ignores SIGINT
    and then unblocks it, which discards one that arrived meanwhile. The parent only blocks,
    never ignores: a Ctrl-C that lands while the workers start stays pending here and is
    delivered when the mask is restored (ignoring it, as before, lost the user's Ctrl-C)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for p in procs:
            p.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_on_devices(job, todo, folder, devices: list[str], tracker, cancel) -> None:
    """Make ``todo`` on ``devices``; returns when all are made or the run stopped (``cancel``);
    raises a worker's error after stopping the others (finished segments stay done)."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    tasks, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    for seg in todo:
        tasks.put(seg)
    for _ in devices:
        tasks.put(None)
    by_index = {s.index: s for s in todo}
    threads = _cpu_threads(devices)
    procs = [ctx.Process(target=worker_main, name=f"vsrkit-{dev}-{w}", daemon=True,
                         args=(w, dev, job, str(folder), tasks, results, stop, os.getpid(),
                               threads if dev == "cpu" else None))
             for w, dev in enumerate(devices)]
    _start_with_sigint_blocked(procs)
    alive = set(range(len(procs)))
    current: dict[int, int] = {}  # worker -> segment index it reported on
    dead_since: dict[int, float] = {}
    error: BaseException | None = None
    try:
        while alive:
            if cancel.cancelled or error is not None:
                stop.set()
            try:
                msg = results.get(timeout=0.2)
            except queue.Empty:
                now = time.monotonic()
                for w in list(alive):
                    if procs[w].exitcode is None:
                        continue
                    if now - dead_since.setdefault(w, now) > LOST_AFTER:
                        alive.discard(w)
                        if error is None and not stop.is_set():
                            seg = current.get(w)
                            error = ResourceError(
                                f"the worker on {devices[w]} ended unexpectedly (exit code "
                                f"{procs[w].exitcode})" + (f" during segment {seg + 1}"
                                                           if seg is not None else ""))
                continue
            kind, w = msg[0], msg[1]
            if kind == "frames":
                current[w] = msg[2]
                tracker.frames(w, msg[3])
            elif kind == "done":
                current.pop(w, None)
                tracker.finished(by_index[msg[2]], msg[3], msg[4], worker=w,
                                 where=devices[w])
            elif kind == "error":
                if error is None:
                    seg = msg[2]
                    where = devices[w] + (f", segment {seg + 1}/{tracker.count}"
                                          if seg is not None else "")
                    error = rebuild_error(msg[3], msg[4], msg[5], where)
            elif kind == "exit":
                alive.discard(w)
    finally:
        stop.set()
        deadline = time.monotonic() + GRACE_SECONDS
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():  # stuck in a long step or loading weights: its file is a .tmp
                p.terminate()
                p.join(timeout=5)
        results.cancel_join_thread()
        tasks.cancel_join_thread()
    if error is not None:
        raise error
