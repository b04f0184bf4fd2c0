"""The UI's job queue, apart from Gradio so it is testable without a browser.

Jobs run one at a time per device (a GPU, or the CPU) in a worker thread per device; each job
has its ``CancelToken`` (the page's Stop button), its latest progress, a throttled preview of
the latest output frame beside its input, and, at the end, the output (or the partial file of
a stopped run) plus an H.264 MP4 the browser can play. A worker keeps its ``Upscaler`` (and
so the model's weights) between jobs that ask for the same model.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..api import Upscaler
from ..errors import Interrupted, VsrkitError
from ..frames import FrameInfo
from ..options import Options
from ..progress import CancelToken, Event
from .command import cli_command
from .video import browser_playable, make_preview, resize_display, to_display

PREVIEW_INTERVAL = 0.5  # [seconds] between live preview captures (about 2 per second)
PREVIEW_SIDE = 640  # [pixels] long side of live previews
# Options groups whose fields shape the engine object itself; jobs that agree on them share
# one loaded Upscaler. The seed only enters the plan, so it does not force a reload.
ENGINE_GROUPS = ("model", "memory")
FINISHED = ("done", "stopped", "failed", "cancelled")


@dataclass
class Job:
    id: int
    input: Path
    opts: Options
    out_dir: Path
    display_input: str  # how the input is named in the page and the CLI command
    container: str | None = None  # output suffix chosen in the page (None: the CLI's default)
    status: str = "queued"  # queued, running, done, stopped, failed, cancelled
    stage: str = "queued"  # the pipeline's Event stage, plus "preview" (making the MP4)
    frames_done: int = 0
    frames_total: int | None = None
    fps: float | None = None
    eta: float | None = None  # [seconds]
    message: str = ""  # the error, or what a stop left behind
    notices: list[str] = field(default_factory=list)
    output: Path | None = None  # the finished file, or the partial one after a stop
    playable: Path | None = None  # what the page's player shows (output itself or a preview)
    command: str = ""  # the CLI line that reproduces the run
    plan_lines: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    preview: tuple[np.ndarray, np.ndarray] | None = None  # (input, output) uint8 (H, W, 3)
    preview_version: int = 0
    cancel: CancelToken = field(default_factory=CancelToken)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def fraction(self) -> float | None:
        if self.status == "done":
            return 1.0
        if not self.frames_total:
            return None
        return min(1.0, self.frames_done / self.frames_total)

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


def device_key(opts: Options) -> str:
    """The queue a job waits in: one per GPU, one for the CPU."""
    dev = opts.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        dev = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cuda:0"
    return dev


def engine_key(opts: Options) -> tuple:
    return tuple((f.name, getattr(opts, f.name)) for f in dataclasses.fields(Options)
                 if f.metadata.get("group") in ENGINE_GROUPS and f.name != "seed")


class JobQueue:
    def __init__(self, work_dir: str | Path):
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._closing = threading.Event()

    # -- the page's side -------------------------------------------------------------------
    def submit(self, input: str | Path, opts: Options, *, display_input: str | None = None,
               container: str | None = None) -> Job:
        opts.validate()
        with self._lock:
            jid = next(self._ids)
            out_dir = self.work_dir / f"job-{jid}"
            out_dir.mkdir(parents=True, exist_ok=True)
            job = Job(jid, Path(input), opts, out_dir, display_input or str(input),
                      container=container)
            self._jobs[jid] = job
            key = device_key(opts)
            if key not in self._queues:
                self._queues[key] = queue.Queue()
                t = threading.Thread(target=self._worker, args=(key,), daemon=True,
                                     name=f"vsrkit-ui-{key}")
                self._workers[key] = t
                t.start()
            self._queues[key].put(job)
        return job

    def get(self, jid: int | None) -> Job | None:
        return self._jobs.get(jid) if jid is not None else None

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def stop(self, jid: int | None) -> bool:
        """End a running job at its next frame (its partial file is kept), or drop a queued
        one. False when there is nothing to stop."""
        job = self.get(jid)
        if job is None or job.is_finished:
            return False
        job.cancel.cancel("stopped from the web UI")
        return True

    def close(self) -> None:
        self._closing.set()
        for job in self.jobs():
            if not job.is_finished:
                job.cancel.cancel("the web UI is shutting down")
        for q in self._queues.values():
            q.put(None)
        for t in self._workers.values():
            t.join(timeout=30)

    # -- the worker's side -------------------------------------------------------------------
    def _worker(self, key: str) -> None:
        held: tuple[tuple, Upscaler] | None = None
        q = self._queues[key]
        try:
            while not self._closing.is_set():
                job = q.get()
                if job is None:
                    break
                if job.cancel.cancelled:  # stopped while it waited
                    self._finish(job, "cancelled", "removed from the queue")
                    continue
                job.status, job.stage, job.started = "running", "loading", time.time()
                try:
                    ek = engine_key(job.opts)
                    if held is None or held[0] != ek:
                        if held is not None:
                            held[1].close()
                            held = None
                        held = (ek, Upscaler(options=job.opts))
                    self._run(job, held[1])
                except VsrkitError as e:
                    self._finish(job, "failed", str(e))
                except Exception as e:  # a bug: the traceback goes to the server log only
                    traceback.print_exc(file=sys.stderr)
                    self._finish(job, "failed", f"internal error ({type(e).__name__}: {e}); "
                                 "the server's log has the traceback")
        finally:
            if held is not None:
                held[1].close()

    def _run(self, job: Job, up: Upscaler) -> None:
        from ..io.sink import default_output_path
        from ..io.source import open_source
        from ..plan import output_size

        with open_source(job.input, job.opts) as src:
            label = output_size(src.spec.height, src.spec.width, job.opts,
                                up.engine.native_scale).label
            name = default_output_path(job.input, src, label).name
            job.frames_total = src.spec.frames
        target = job.out_dir / name
        if job.container:
            target = target.with_suffix("." + job.container.lstrip("."))
        job.command = cli_command(job.display_input, target.name, job.opts)
        last_preview = [0.0]

        def on_event(e: Event) -> None:
            job.stage = e.stage
            if e.stage == "upscaling":
                job.frames_done = e.frames_done
                job.frames_total = e.frames_total or job.frames_total
                job.fps, job.eta = e.fps, e.eta

        def on_frames(outputs: torch.Tensor, infos: Sequence[FrameInfo],
                      inputs: torch.Tensor | None) -> None:
            now = time.monotonic()
            if inputs is None or now - last_preview[0] < PREVIEW_INTERVAL:
                return
            last_preview[0] = now
            out = to_display(outputs[-1], PREVIEW_SIDE)
            # the input at the output's display size, so the two read side by side
            job.preview = (resize_display(to_display(inputs[-1], PREVIEW_SIDE), out.shape[:2],
                                          nearest=True),
                           out)
            job.preview_version += 1

        changes = {f.name: getattr(job.opts, f.name) for f in dataclasses.fields(Options)
                   if getattr(job.opts, f.name) != getattr(up.options, f.name)}
        try:
            result = up.upscale(job.input, target, on_event=on_event, cancel=job.cancel,
                                on_frames=on_frames, notice=job.notices.append, **changes)
        except Interrupted as e:
            job.frames_done = e.frames
            job.output = Path(e.partial_path) if e.partial_path else None
            self._attach_playable(job)
            self._finish(job, "stopped", str(e))
            return
        job.plan_lines = result.plan.describe()
        job.output, job.frames_done = result.output, result.frames
        job.frames_total = result.frames
        self._attach_playable(job)
        self._finish(job, "done", "")

    def _attach_playable(self, job: Job) -> None:
        """The page plays MP4/WebM with H.264/VP9/AV1 in 8-bit 4:2:0; anything else gets a
        small H.264 preview beside the output."""
        if job.output is None or not job.output.exists():
            return
        if browser_playable(job.output):
            job.playable = job.output
            return
        job.stage = "preview"
        try:
            job.playable = make_preview(job.output, job.out_dir / "preview.mp4")
        except Exception as e:  # noqa: BLE001 - a preview is a nicety; the output stands
            traceback.print_exc(file=sys.stderr)
            job.notices.append(f"no in-page preview ({type(e).__name__}: {e})")

    def _finish(self, job: Job, status: str, message: str) -> None:
        job.status, job.message, job.finished = status, message, time.time()
        job.stage = status
        job._done.set()
