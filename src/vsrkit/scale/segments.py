"""Segmented runs: a long video as temporal segments, each reproducible on its own, so a run
can resume after a crash and segments can run on several devices or a Ray cluster.

    work folder  .<output name>.vsrkit-work/   next to the output
        manifest.json      what the segments were made with, and which are complete
        seg_00000.nut ...  each segment's kept frames, lossless (FFV1 RGB, exact pts)

Segments are lossless FFV1 in NUT rather than the final codec: the final encode then happens
once, over frames identical to an unbroken run's (so no generation loss, no GOP seams, and the
output is bit-identical to an unsegmented run), and NUT keeps every time base exactly. The cost
is disk space for the work folder, which is removed when the output is complete.

A segment feeds ``warmup`` frames before its first kept frame so stateful models rebuild their
state (FlashVSR's KV cache and decoder memory, SeedVR2's temporal batches), and tells the engine
its absolute ``start_frame`` so the noise matches the unbroken run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
import torch

from .. import engines
from ..errors import OutputError, UsageError
from ..frames import FrameInfo
from ..io.sink import FFV1_FAST, check_output, default_output_path, open_sink, quantize
from ..io.source import Source, open_source
from ..options import Options, parse_frame_range
from ..plan import output_size
from ..progress import CancelToken, Event
from ..tiling import Segment, segments

DEFAULT_SEGMENT_FRAMES = 600  # ~20 s at 30 fps: little lost on a crash, few warm-ups
MANIFEST_VERSION = 1
# options that change no segment's frames (they act at the final encode) or that only
# choose where segments run
_NOT_IN_FINGERPRINT = {"overwrite", "codec", "crf", "quality", "pix_fmt", "no_audio",
                       "no_subtitles", "no_data", "dry_run", "devices", "ray", "device",
                       "vram_budget", "offload_blocks", "compile", "attention"}


def work_dir(output: Path) -> Path:
    return output.with_name(f".{output.name}.vsrkit-work")


def fingerprint(input: Path, opts: Options, engine, n_frames: int) -> dict:
    """What a segment's frames depend on. A change in any of it invalidates the work folder."""
    st = input.stat() if input.is_file() else None
    weights = {}
    for f in engine.weight_files():
        try:
            from .. import hub

            p = hub.resolve([f], model_id=engine.name,
                            weights_dir=getattr(engine, "weights_dir", None) or opts.weights)[f.name]
            s = p.stat()
            weights[f.name] = f"{s.st_size}:{int(s.st_mtime)}"
        except Exception:  # noqa: BLE001 - missing weights fail later with their own message
            weights[f.name] = "missing"
    return {
        "version": MANIFEST_VERSION,
        "input": str(input.resolve()),
        "input_stat": [st.st_size, int(st.st_mtime)] if st else None,
        "frames": n_frames,
        "model": opts.model,
        "weights": weights,
        "options": {k: v for k, v in sorted(dataclasses.asdict(opts).items())
                    if k not in _NOT_IN_FINGERPRINT},
    }


class Manifest:
    """manifest.json, rewritten atomically after every completed segment."""

    def __init__(self, folder: Path, fp: dict, segs: list[Segment]):
        self.folder = folder
        self.path = folder / "manifest.json"
        self.lock = threading.Lock()
        self.data = {"fingerprint": fp, "segments": [
            {"index": s.index, "read_start": s.read_start, "keep_start": s.keep_start,
             "stop": s.stop, "done": False, "sha256": None} for s in segs]}

    @classmethod
    def open(cls, folder: Path, fp: dict, segs: list[Segment],
             notice: Callable[[str], None]) -> "Manifest":
        m = cls(folder, fp, segs)
        if m.path.exists():
            try:
                old = json.loads(m.path.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            changed = _diff(old["fingerprint"], fp) if old else ["unreadable manifest"]
            if not changed and [(s["read_start"], s["stop"]) for s in old["segments"]] == \
                    [(s["read_start"], s["stop"]) for s in m.data["segments"]]:
                for seg in old["segments"]:
                    f = folder / seg_name(seg["index"])
                    if seg["done"] and f.exists() and sha256(f) == seg["sha256"]:
                        m.data["segments"][seg["index"]].update(
                            done=True, sha256=seg["sha256"], pts=seg.get("pts"))
                done = sum(s["done"] for s in m.data["segments"])
                notice(f"resuming: {done}/{len(segs)} segments already done in {folder}")
            else:
                notice(f"{folder} was made with other settings ({', '.join(changed) or 'segments'}"
                       "); starting over")
                shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        m.save()
        return m

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    def mark_done(self, index: int, result: tuple[str, list]) -> None:
        digest, pts = result
        with self.lock:
            self.data["segments"][index].update(done=True, sha256=digest, pts=pts)
            self.save()

    def pending(self) -> list[Segment]:
        return [Segment(s["index"], s["read_start"], s["keep_start"], s["stop"])
                for s in self.data["segments"] if not s["done"]]


def _diff(a: dict, b: dict) -> list[str]:
    out = [k for k in ("input", "input_stat", "frames", "model", "weights") if a.get(k) != b.get(k)]
    ao, bo = a.get("options", {}), b.get("options", {})
    out += [f"--{k.replace('_', '-')}" for k in sorted(set(ao) | set(bo)) if ao.get(k) != bo.get(k)]
    return out


def seg_name(index: int) -> str:
    return f"seg_{index:05d}.nut"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SegmentWriter:
    """Drops the warm-up outputs, writes the kept frames losslessly with their pts."""

    def __init__(self, path: Path, skip: int, out_size: tuple[int, int], bits: int,
                 time_base: Fraction, rate: Fraction, keep: int):
        self.path, self.skip, self.bits, self.keep = path, skip, bits, keep
        self.tmp = path.with_suffix(".tmp.nut")
        self.c = av.open(str(self.tmp), "w")
        self.s = self.c.add_stream("ffv1", rate=30, options=FFV1_FAST)
        self.s.codec_context.thread_type, self.s.codec_context.thread_count = "SLICE", 0
        self.s.height, self.s.width = out_size
        self.s.pix_fmt = "gbrp16le" if bits > 8 else "bgr0"
        self.frames_written = 0
        # the frames' real timestamps travel in the manifest: the file only holds the pixels
        self.pts: list[tuple[int | None, int | None]] = []

    def write(self, frames: torch.Tensor, infos) -> None:
        fmt = "rgb48le" if self.bits > 8 else "rgb24"
        for img, info in zip(quantize(frames, self.bits), infos):
            if self.skip > 0:
                self.skip -= 1
                continue
            if self.frames_written >= self.keep:  # look-ahead frames: read, not kept
                continue
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), fmt)
            fr = fr.reformat(format=self.s.pix_fmt)
            fr.pts = self.frames_written
            self.pts.append((info.pts, info.duration))
            for p in self.s.encode(fr):
                self.c.mux(p)
            self.frames_written += 1

    def close(self) -> Path:
        for p in self.s.encode():
            self.c.mux(p)
        self.c.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.c.close()
        finally:
            self.tmp.unlink(missing_ok=True)


@dataclasses.dataclass
class Job:
    """Everything a worker (thread, process or Ray actor) needs to make one segment."""

    input: str
    opts: Options
    first: int  # absolute index (in the source) of frame 0 of the selected range
    total: int  # frames in the selected range
    lookahead: int  # frames read past a segment's end (the engine's look-ahead)
    out_size: tuple[int, int]
    bits: int
    time_base: Fraction
    rate: Fraction


def make_job(input: Path, opts: Options, src: Source, out_size: tuple[int, int], total: int,
             lookahead: int) -> Job:
    first = parse_frame_range(opts.frames)[0] if opts.frames else 0
    return Job(str(input), opts, first, total, lookahead, out_size,
               16 if src.spec.bit_depth > 8 else 8, src.spec.time_base, src.spec.frame_rate)


def run_segment(job: Job, seg: Segment, engine, dest: Path,
                cancel: CancelToken | None = None, on_frames=None) -> tuple[str, list]:
    """Make one segment file; returns its sha256 and its frames' (pts, duration)."""
    from ..run import _stream

    a = job.first + seg.read_start
    stop = min(job.total, seg.stop + job.lookahead)  # read past the end: the model looks ahead
    opts = job.opts.replace(frames=f"{a}:{job.first + stop}", start=None, end=None,
                            segment_frames=None, devices=None, ray=None)
    with open_source(job.input, opts) as src:
        plan = engine.plan(src.spec, opts)
        plan = dataclasses.replace(plan, start_frame=seg.read_start)
        session = engine.open(plan)
        writer = SegmentWriter(dest, seg.keep_start - seg.read_start, job.out_size, job.bits,
                               job.time_base, job.rate, keep=seg.kept)
        try:
            _stream(src, session, writer, stop - seg.read_start, lambda e: None,
                    cancel or CancelToken(), on_frames)
        except BaseException:
            writer.abort()
            raise
        finally:
            session.close()
        writer.close()
    return sha256(dest), writer.pts


class Assembler:
    """Writes finished segments into the output in order while later ones are still being made
    (so the final encode overlaps the model's work instead of following it)."""

    def __init__(self, manifest: "Manifest", spec, sink):
        self.manifest, self.spec, self.sink = manifest, spec, sink
        self.next = 0
        self.written = 0
        self.lock = threading.Lock()

    def feed_ready(self) -> None:
        with self.lock:
            segs = self.manifest.data["segments"]
            while self.next < len(segs) and segs[self.next]["done"]:
                seg = segs[self.next]
                fmt = "rgb48le" if self.spec.bit_depth > 8 else "rgb24"
                with av.open(str(self.manifest.folder / seg_name(seg["index"]))) as c:
                    for k, fr in enumerate(c.decode(video=0)):
                        pts, dur = seg["pts"][k]
                        info = FrameInfo(self.written, pts, self.spec.time_base, dur)
                        self.sink.write(torch.from_numpy(fr.to_ndarray(format=fmt))[None], [info])
                        self.written += 1
                self.next += 1


def count_frames(input: Path, opts: Options, src: Source) -> int:
    """Frames of the selected range (demuxing packets when the header does not say)."""
    if opts.start is not None or opts.end is not None:
        raise UsageError("segmented runs take --frames A:B, not --start/--end")
    if src.spec.frames is not None:
        return src.spec.frames
    n = sum(1 for _ in open_source(input, opts.replace(segment_frames=None)))
    return n


def run_segmented(input, output, opts: Options, *, engine=None, on_event=None,
                  cancel: CancelToken | None = None, notice=None):
    """Plan segments, make the missing ones (here, on several devices, or on Ray), then
    assemble the output with the untouched streams copied once."""
    from ..run import Result

    emit = on_event or (lambda e: None)
    say = notice or (lambda m: None)
    cancel = cancel or CancelToken()
    t0 = time.monotonic()
    input = Path(input)
    engine = engine or engines.create(opts)
    with open_source(input, opts) as src:
        plan = engine.plan(src.spec, opts)
        if opts.dry_run:
            return Result(input, None, 0, 0.0, plan)
        label = output_size(src.spec.height, src.spec.width, opts, engine.native_scale).label
        out = Path(output) if output is not None else default_output_path(input, src, label)
        check_output(input, out, opts)
        n = count_frames(input, opts, src)
        length = opts.segment_frames or DEFAULT_SEGMENT_FRAMES
        segs = [dataclasses.replace(s, read_start=s.read_start // plan.frame_align
                                    * plan.frame_align)
                for s in segments(n, length, plan.warmup_frames)]
        folder = work_dir(out)
        manifest = Manifest.open(folder, fingerprint(input, opts, engine, n), segs, say)
        job = make_job(input, opts, src, plan.out_size, n, plan.lookahead_frames)
        todo = manifest.pending()
        emit(Event("upscaling", n - sum(s.kept for s in todo), n,
                   message=f"{len(segs)} segments, {len(todo)} to make"))
        sink = open_sink(out, src, plan.out_size, opts, notice=say)
        asm = Assembler(manifest, src.spec, sink)
        try:
            asm.feed_ready()  # segments kept from an earlier run
            if opts.ray:
                from .ray_runner import run_on_ray

                run_on_ray(job, todo, manifest, opts.ray, emit, cancel, n, on_done=asm.feed_ready)
            elif opts.devices:
                from .devices import run_on_devices

                run_on_devices(job, todo, manifest, opts, emit, cancel, n, on_done=asm.feed_ready)
            else:
                done = n - sum(s.kept for s in todo)
                for seg in todo:
                    if cancel.cancelled:
                        break
                    manifest.mark_done(seg.index, run_segment(job, seg, engine,
                                                              folder / seg_name(seg.index), cancel))
                    asm.feed_ready()
                    done += seg.kept
                    emit(Event("upscaling", done, n,
                               message=f"segment {seg.index + 1}/{len(segs)}"))
            asm.feed_ready()
            if cancel.cancelled or manifest.pending():
                from ..errors import Interrupted

                kept = len(segs) - len(manifest.pending())
                raise Interrupted(f"stopped ({cancel.reason}): {kept}/{len(segs)} segments kept in "
                                  f"{folder}; run the same command again to resume", None, 0)
            if asm.written != n:
                raise OutputError(f"{folder}: segments hold {asm.written} frames, expected {n}")
        except BaseException:
            partial = sink.abort()
            if partial is not None:
                say(f"{partial} holds the {asm.written} frames assembled so far")
            raise
        emit(Event("finalizing", n, n, message=str(out)))
        final = sink.close()
    shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.monotonic() - t0
    emit(Event("done", n, n, n / elapsed if elapsed else None, 0.0, str(final)))
    return Result(input, final, n, elapsed, plan)
