"""The pipeline: source -> plan -> engine -> sink, as three stages joined by bounded queues.

    decode thread --(frames, ≤ IN_QUEUE)--> engine (this thread) --(batches, ≤ OUT_QUEUE)--> encode thread

Host memory is bounded by the queue sizes and the engine's own latency, never by the video's
length. Output frame i is paired with input frame i's FrameInfo (engines never see time).
A cancel token (Ctrl-C, SIGTERM, a UI's Stop) ends the run at the next frame; what was encoded
is finalized as a playable ``*.partial.*`` file and ``Interrupted`` is raised.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch

from . import engines
from .engines.base import EnginePlan
from .errors import Interrupted, VsrkitError
from .frames import FrameInfo
from .io.sink import check_output, default_output_path, open_sink, quantize_tensor
from .io.source import open_source
from .options import Options
from .plan import budget_for, choose_plan, output_size
from .progress import CancelToken, Event, EventCallback, RateMeter

if TYPE_CHECKING:
    from .engines.base import Engine

IN_QUEUE_FRAMES = 8  # decoded frames waiting for the engine
OUT_QUEUE_BATCHES = 4  # engine outputs waiting for the encoder
PUSH_FRAMES = 4  # frames handed to the engine per push (engines buffer what they need)

FramesCallback = Callable[[torch.Tensor, Sequence[FrameInfo], torch.Tensor | None], None]
_END = object()


@dataclass
class Result:
    input: Path
    output: Path | None  # None for --dry-run
    frames: int
    seconds: float
    plan: EnginePlan
    partial: bool = False
    notices: list[str] = field(default_factory=list)
    # seconds each pipeline stage was busy (decode, engine, encode): they overlap, so the
    # largest is the bottleneck and the sum exceeds ``seconds`` when the overlap works
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class _Worker(threading.Thread):
    """A daemon thread whose exception is re-raised where ``check()`` is called."""

    def __init__(self, name: str, target: Callable[[], None]):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self.error = e

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def _host_item(out: torch.Tensor, infos, sink) -> tuple:
    """An engine's output batch as the encoder thread takes it. CUDA frames are quantized on the
    GPU and copied into pinned host memory asynchronously, with an event the encoder waits on:
    4x fewer bytes cross than float32, and the encoder never waits behind the engine's next
    step (a copy made from the encoder thread would queue after it on the same stream)."""
    if out.device.type != "cuda":
        return out, infos, None
    q = quantize_tensor(out, getattr(sink, "bits", 8))
    host = torch.empty(q.shape, dtype=q.dtype, pin_memory=True)
    host.copy_(q, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    return host, infos, done


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when ``stop`` is set (so no thread waits forever)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def run(input: str | Path, output: str | Path | None, opts: Options, *,
        engine: "Engine | None" = None, on_event: EventCallback | None = None,
        cancel: CancelToken | None = None, on_frames: FramesCallback | None = None,
        notice: Callable[[str], None] | None = None) -> Result:
    """Upscale one video (or image sequence). See ``vsrkit.api`` for the documented front."""
    opts.validate()
    if opts.segment_frames or opts.devices or opts.ray:
        from .scale.segments import run_segmented

        return run_segmented(input, output, opts, engine=engine, on_event=on_event,
                             cancel=cancel, notice=notice)
    emit = on_event or (lambda e: None)
    notices: list[str] = []

    def note(msg: str) -> None:
        notices.append(msg)
        (notice or (lambda m: None))(msg)

    cancel = cancel or CancelToken()
    t_start = time.monotonic()
    input = Path(input)
    emit(Event("probing", message=str(input)))
    with open_source(input, opts) as src:
        spec = src.spec
        engine = engine or engines.create(opts)
        plan, opts = choose_plan(engine, spec, opts, budget_for(opts), note)
        if opts.dry_run:
            return Result(input, None, 0, 0.0, plan, notices=notices)
        label = output_size(spec.height, spec.width, opts, engine.native_scale).label
        out_path = Path(output) if output is not None else default_output_path(input, src, label)
        check_output(input, out_path, opts)
        emit(Event("loading", message=f"{plan.engine} on {plan.device}"))
        session = engine.open(plan)
        session.notice = note
        sink = open_sink(out_path, src, plan.out_size, opts, notice=note)
        stages: dict[str, float] = {}
        try:
            frames = _stream(src, session, sink, spec.frames, emit, cancel, on_frames, stages)
        except BaseException as e:
            session.close()
            partial = sink.abort()
            if isinstance(e, KeyboardInterrupt) or cancel.cancelled:
                n = sink.frames_written
                where = f"{partial} holds {n} frames" if partial else "no frames were written"
                raise Interrupted(f"stopped ({cancel.reason}): {where}", str(partial) if partial
                                  else None, n) from None
            if partial is not None and isinstance(e, VsrkitError):
                e.args = (f"{e.args[0] if e.args else e}; {partial} holds the "
                          f"{sink.frames_written} frames done",)
            raise
        session.close()
        emit(Event("finalizing", frames, frames, message=str(out_path)))
        final = sink.close()
    elapsed = time.monotonic() - t_start
    emit(Event("done", frames, frames, frames / elapsed if elapsed else None, 0.0, str(final)))
    return Result(input, final, frames, elapsed, plan, notices=notices, stages=stages)


def _stream(src, session, sink, total: int | None, emit: EventCallback, cancel: CancelToken,
            on_frames: FramesCallback | None, stages: dict[str, float] | None = None) -> int:
    """Decode and encode on their own threads, the engine on this one. ``stages`` receives
    each stage's busy seconds (time in its own work, not waiting on a queue)."""
    stop = threading.Event()
    busy = stages if stages is not None else {}
    busy.update(decode=0.0, engine=0.0, encode=0.0)
    in_q: queue.Queue = queue.Queue(maxsize=IN_QUEUE_FRAMES)
    out_q: queue.Queue = queue.Queue(maxsize=OUT_QUEUE_BATCHES)
    meter = RateMeter()
    written = [0]

    def decode() -> None:
        it = iter(src)
        while True:
            t = time.perf_counter()
            item = next(it, _END)
            busy["decode"] += time.perf_counter() - t
            if item is _END:
                break
            if not _put(in_q, item, stop):
                return
        _put(in_q, _END, stop)

    def encode() -> None:
        while not stop.is_set():
            try:
                item = out_q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            frames, infos, copied = item
            if copied is not None:
                copied.synchronize()  # the frames' copy to the host (not the engine's later work)
            t = time.perf_counter()
            sink.write(frames, infos)
            busy["encode"] += time.perf_counter() - t
            written[0] += len(infos)
            fps, eta = meter.update(written[0], total)
            emit(Event("upscaling", written[0], total, fps, eta))

    decoder, encoder = _Worker("vsrkit-decode", decode), _Worker("vsrkit-encode", encode)
    decoder.start()
    encoder.start()
    pending: collections.deque = collections.deque()  # (info, input frame) awaiting output

    def timed(outputs: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        while True:
            t = time.perf_counter()
            out = next(outputs, None)
            busy["engine"] += time.perf_counter() - t
            if out is None:
                return
            yield out

    def deliver(outputs: Iterator[torch.Tensor]) -> None:
        for out in timed(iter(outputs)):
            n = out.shape[0]
            if n > len(pending):
                raise RuntimeError(f"engine returned {n} frames for {len(pending)} pending")
            pairs = [pending.popleft() for _ in range(n)]
            infos = [p[0] for p in pairs]
            if on_frames is not None:
                on_frames(out, infos, torch.stack([p[1] for p in pairs]))
            encoder.check()
            if not _put(out_q, _host_item(out, infos, sink), stop):
                return

    try:
        batch: list = []
        emit(Event("upscaling", 0, total))
        while True:
            if cancel.cancelled:
                raise KeyboardInterrupt
            try:
                item = in_q.get(timeout=0.1)
            except queue.Empty:
                decoder.check()
                encoder.check()
                continue
            if item is not _END:
                batch.append(item)
                pending.append((item[1], item[0]))
            if batch and (len(batch) >= PUSH_FRAMES or item is _END):
                frames = torch.stack([f for f, _ in batch])  # (T, H, W, 3)
                batch.clear()
                deliver(session.push(frames))
            if item is _END:
                decoder.check()
                deliver(session.flush())
                break
        if pending:
            raise RuntimeError(f"engine ended with {len(pending)} frames unreturned")
        _put(out_q, _END, stop)
        while encoder.is_alive():
            encoder.join(0.1)
            if cancel.cancelled:
                raise KeyboardInterrupt
        encoder.check()
        return written[0]
    finally:
        stop.set()
        decoder.join(timeout=5)
        encoder.join(timeout=30)
