"""Segmented runs: a long video as temporal segments, each reproducible on its own, so a run
can resume after a crash and segments can run on several devices or a Ray cluster.

    work folder  .<output name>.vsrkit-work/   next to the output
        manifest.json      what the segments were made with, and which are complete
        seg_00000.nut ...  each segment's kept frames, encoded as the output will be (NUT keeps
                           the exact timestamps; MOV for ProRes)

Each worker encodes its own segments with the output's encoder and settings, so encoding runs
on every worker in parallel; the output is then assembled by copying packets, in order, while
later segments are still being made (``Assembler``), and finished by the one remux of the
input's other streams. Nothing is decoded or encoded twice. With an intra-only codec (FFV1,
ProRes, PNG) the frames are bit-identical to an unsegmented run's; inter-frame codecs start a
GOP at each segment (every ~600 frames by default, as often as their default keyframe interval).

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
from pathlib import Path
from typing import Callable


from .. import engines
from ..errors import Interrupted, OutputError, UsageError, VsrkitError
from ..frames import FrameInfo
from ..io.sink import VideoSink, check_output, choose_codec, default_output_path, open_sink
from ..io.source import Source, open_source
from ..options import Options, parse_frame_range
from ..plan import output_size
from ..progress import CancelToken, Event, RateMeter
from ..tiling import Segment, context_frames, plan_segments

MAX_SEGMENT_FRAMES = 600  # ~20 s at 30 fps: little lost on a crash, few warm-ups
MANIFEST_VERSION = 2  # 2: segments encoded as the output (1: FFV1 intermediates)
# options that change no segment's frames or packets (they act at the final remux) or that
# only choose where segments run
_NOT_IN_FINGERPRINT = {"overwrite", "no_audio", "no_subtitles", "no_data", "dry_run", "devices",
                       "ray", "device", "vram_budget", "offload_blocks", "compile", "attention"}


def work_dir(output: Path) -> Path:
    return output.with_name(f".{output.name}.vsrkit-work")


def fingerprint(input: Path, opts: Options, engine, n_frames: int, codec: str) -> dict:
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
        "codec": codec,  # as resolved for the output (auto: by container and depth)
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
             notice: Callable[[str], None], adopt: bool = False) -> "Manifest":
        """The work folder's manifest: complete segments of an earlier run with the same
        fingerprint are kept (``adopt``: its segment cuts too, when this run's cuts were only
        planned, e.g. for another number of devices), anything else starts over."""
        m = cls(folder, fp, segs)
        if m.path.exists():
            try:
                old = json.loads(m.path.read_text())
                old_fp = old["fingerprint"]
            except (OSError, json.JSONDecodeError, KeyError, TypeError):
                old = None
            changed = _diff(old_fp, fp) if old else ["unreadable manifest"]
            cuts = lambda ss: [(s["read_start"], s["keep_start"], s["stop"]) for s in ss]  # noqa
            if not changed and adopt and cuts(old["segments"]) != cuts(m.data["segments"]):
                segs = [Segment(s["index"], s["read_start"], s["keep_start"], s["stop"])
                        for s in old["segments"]]
                m = cls(folder, fp, segs)
            if not changed and cuts(old["segments"]) == cuts(m.data["segments"]):
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

    def segments(self) -> list[Segment]:
        return [Segment(s["index"], s["read_start"], s["keep_start"], s["stop"])
                for s in self.data["segments"]]

    def pending(self) -> list[Segment]:
        return [s for s, d in zip(self.segments(), self.data["segments"]) if not d["done"]]


def _diff(a: dict, b: dict) -> list[str]:
    out = [k for k in ("version", "input", "input_stat", "frames", "model", "weights", "codec")
           if a.get(k) != b.get(k)]
    ao, bo = a.get("options", {}), b.get("options", {})
    out += [f"--{k.replace('_', '-')}" for k in sorted(set(ao) | set(bo)) if ao.get(k) != bo.get(k)]
    return out


def seg_name(index: int) -> str:
    # the extension says nothing of the codec: PyAV is told the format (MOV for ProRes)
    return f"seg_{index:05d}.seg"


def seg_format(codec: str) -> str:
    """The container of segment files: NUT keeps any time base exactly; ProRes goes into
    MOV (which NUT does not take), as VideoSink's own intermediate does."""
    return "mov" if codec == "prores" else "nut"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SegmentWriter:
    """Drops the warm-up outputs and encodes the kept frames, with their source timestamps, as
    the output's encoder would (a ``video_file`` VideoSink); ``close`` renames the finished file
    into place, so a segment file exists only complete."""

    def __init__(self, path: Path, skip: int, keep: int, first_index: int, src: Source,
                 out_size: tuple[int, int], opts: Options):
        self.path, self.skip, self.keep, self.first_index = path, skip, keep, first_index
        self.tmp = path.with_name(path.name + ".tmp")
        self.sink = VideoSink(path, src, out_size, opts, lambda m: None, video_file=self.tmp,
                              video_format=seg_format(opts.codec))
        self.frames_written = 0
        # (pts, duration) of each kept frame, for the manifest: the parent places the segment's
        # packets on the output's timeline with them
        self.pts: list[tuple[int, int | None]] = []
        self.on_kept: Callable[[int], None] | None = None

    @property
    def bits(self) -> int:
        """The output's depth: the pipeline quantizes CUDA frames to it before they reach us."""
        return self.sink.bits

    def write(self, frames, infos) -> None:
        keep = []
        for i, info in enumerate(infos):
            if self.skip > 0:
                self.skip -= 1
            elif self.frames_written + len(keep) < self.keep:  # past it: look-ahead frames
                keep.append(i)
        if not keep:
            return
        kept = []
        for k, i in enumerate(keep):
            info = infos[i]
            # frames without a timestamp count in frames of the selected range, as an
            # unsegmented run counts them
            pts = info.pts if info.pts is not None else self.first_index + self.frames_written + k
            kept.append(FrameInfo(info.index, pts, info.time_base, info.duration))
            self.pts.append((pts, info.duration))
        self.sink.write(frames[keep[0]:keep[-1] + 1], kept)
        self.frames_written += len(kept)
        if self.on_kept is not None:
            self.on_kept(self.frames_written)

    def close(self) -> Path:
        self.sink.finish_segment()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.sink.container.close()
        finally:
            self.tmp.unlink(missing_ok=True)


@dataclasses.dataclass
class Job:
    """Everything a worker (process or Ray actor) needs to make segments of one video."""

    input: str
    opts: Options  # the run's options, codec resolved (segments are encoded as the output)
    first: int  # absolute index (in the source) of frame 0 of the selected range
    total: int  # frames in the selected range
    lookahead: int  # frames read past a segment's end (the engine's look-ahead)
    out_size: tuple[int, int]

    def on_device(self, device: str) -> "Job":
        return dataclasses.replace(self, opts=self.opts.replace(device=device, devices=None,
                                                                ray=None))


def make_job(input: Path, opts: Options, codec: str, out_size: tuple[int, int], total: int,
             lookahead: int) -> Job:
    first = parse_frame_range(opts.frames)[0] if opts.frames else 0
    return Job(str(input), opts.replace(codec=codec), first, total, lookahead, out_size)


def run_segment(job: Job, seg: Segment, engine, dest: Path, cancel: CancelToken | None = None,
                on_kept: Callable[[int], None] | None = None) -> tuple[str, list]:
    """Make one segment file; returns its sha256 and its frames' (pts, duration).
    ``on_kept(n)``: n kept frames are encoded so far (called from the encode thread)."""
    from ..run import _stream

    a = job.first + seg.read_start
    stop = min(job.total, seg.stop + job.lookahead)  # read past the end: the model looks ahead
    opts = job.opts.replace(frames=f"{a}:{job.first + stop}", start=None, end=None,
                            segment_frames=None, devices=None, ray=None)
    with open_source(job.input, opts) as src:
        plan = engine.plan(src.spec, opts)
        plan = dataclasses.replace(plan, start_frame=seg.read_start)
        session = engine.open(plan)
        writer = SegmentWriter(dest, seg.keep_start - seg.read_start, seg.kept, seg.keep_start,
                               src, job.out_size, job.opts)
        writer.on_kept = on_kept
        try:
            _stream(src, session, writer, stop - seg.read_start, lambda e: None,
                    cancel or CancelToken(), None)
            if writer.frames_written != seg.kept:
                raise OutputError(f"segment {seg.index}: {writer.frames_written} frames made, "
                                  f"{seg.kept} expected")
        except BaseException:
            writer.abort()
            raise
        finally:
            session.close()
        writer.close()
    return sha256(dest), writer.pts


class Assembler:
    """Appends complete segments to the output in order (packets copied), as soon as each one
    and all before it are complete. Called only by the process that owns the manifest, after
    it marked the segment done, and a segment is marked done only after its worker renamed the
    finished file into place: no file is read while it is being written."""

    def __init__(self, manifest: "Manifest", sink):
        self.manifest, self.sink = manifest, sink
        self.next = 0
        self.written = 0

    def feed_ready(self) -> None:
        segs = self.manifest.data["segments"]
        while self.next < len(segs) and segs[self.next]["done"]:
            seg = segs[self.next]
            self.sink.append_encoded(self.manifest.folder / seg_name(seg["index"]),
                                     [tuple(p) for p in seg["pts"]])
            self.written += len(seg["pts"])
            self.next += 1


def count_frames(input: Path, opts: Options, src: Source) -> int:
    """Frames of the selected range (demuxing packets when the header does not say)."""
    if opts.start is not None or opts.end is not None:
        raise UsageError("segmented runs take --frames A:B, not --start/--end")
    if src.spec.frames is not None:
        return src.spec.frames
    n = sum(1 for _ in open_source(input, opts.replace(segment_frames=None)))
    return n


class Tracker:
    """The parent's side of a segmented run, whoever makes the segments: marks each finished
    segment in the manifest, appends what is ready to the output in order, and reports
    progress in kept frames (FPS over the last seconds, ETA)."""

    def __init__(self, manifest: Manifest, asm: Assembler, total: int, emit):
        self.manifest, self.asm, self.total, self.emit = manifest, asm, total, emit
        self.count = len(manifest.data["segments"])
        self.done = total - sum(s.kept for s in manifest.pending())  # frames in done segments
        self.partial: dict = {}  # worker -> kept frames of the segment it is making
        self.meter = RateMeter(window=30.0)  # several workers report in bursts
        self.lock = threading.Lock()

    def _report(self, message: str | None = None) -> None:
        n = self.done + sum(self.partial.values())
        fps, eta = self.meter.update(n, self.total)
        self.emit(Event("upscaling", n, self.total, fps, eta, message))

    def frames(self, worker, kept: int) -> None:
        with self.lock:
            self.partial[worker] = kept
            self._report()

    def finished(self, seg: Segment, digest: str, pts: list, worker=None,
                 where: str | None = None) -> None:
        with self.lock:
            self.manifest.mark_done(seg.index, (digest, pts))
            self.partial.pop(worker, None)
            self.done += seg.kept
            self.asm.feed_ready()
            self._report(f"segment {seg.index + 1}/{self.count} done"
                         + (f" on {where}" if where else ""))


def workers_for(opts: Options) -> tuple[int, list[str] | None]:
    """How many workers will make segments (the segment plan balances them), and the devices
    of a --devices run."""
    if opts.devices:
        from .devices import parse_devices

        devs = parse_devices(opts.devices)
        return len(devs), devs
    if opts.ray and not opts.dry_run:
        from .ray_runner import cluster_workers

        return cluster_workers(opts.ray), None
    return 1, None


def run_segmented(input, output, opts: Options, *, engine=None, on_event=None,
                  cancel: CancelToken | None = None, notice=None):
    """Plan segments, make the missing ones (here, on several devices, or on Ray) while the
    finished ones are appended to the output in order, then finish the output with the
    untouched streams copied once."""
    from ..run import Result

    emit = on_event or (lambda e: None)
    say = notice or (lambda m: None)
    cancel = cancel or CancelToken()
    t0 = time.monotonic()
    input = Path(input)
    workers, devices = workers_for(opts)
    engine = engine or engines.create(opts)
    with open_source(input, opts) as src:
        plan = engine.plan(src.spec, opts)
        n = count_frames(input, opts, src)
        segs = plan_segments(n, workers=workers, warmup=plan.warmup_frames,
                             lookahead=plan.lookahead_frames, align=plan.frame_align,
                             length=opts.segment_frames, max_length=MAX_SEGMENT_FRAMES)
        plan.notes.append(describe_segments(segs, n, plan.lookahead_frames, workers, devices,
                                            opts))
        if opts.dry_run:
            return Result(input, None, 0, 0.0, plan)
        label = output_size(src.spec.height, src.spec.width, opts, engine.native_scale).label
        out = Path(output) if output is not None else default_output_path(input, src, label)
        check_output(input, out, opts)
        codec = choose_codec(out, src.spec, opts)
        folder = work_dir(out)
        manifest = Manifest.open(folder, fingerprint(input, opts, engine, n, codec), segs, say,
                                 adopt=opts.segment_frames is None)
        segs = manifest.segments()
        say(describe_segments(segs, n, plan.lookahead_frames, workers, devices, opts))
        job = make_job(input, opts, codec, plan.out_size, n, plan.lookahead_frames)
        todo = manifest.pending()
        sink = open_sink(out, src, plan.out_size, opts, notice=say, packets=True)
        asm = Assembler(manifest, sink)
        tracker = Tracker(manifest, asm, n, emit)
        try:
            asm.feed_ready()  # segments kept from an earlier run
            emit(Event("upscaling", tracker.done, n,
                       message=f"{len(segs)} segments, {len(todo)} to make"))
            if opts.ray:
                from .ray_runner import run_on_ray

                run_on_ray(job, todo, folder, opts.ray, tracker, cancel, n_workers=workers)
            elif devices:
                from .devices import run_on_devices

                run_on_devices(job, todo, folder, devices, tracker, cancel)
            else:
                for seg in todo:
                    if cancel.cancelled:
                        break
                    result = run_segment(job, seg, engine, folder / seg_name(seg.index), cancel,
                                         lambda k: tracker.frames(0, k))
                    tracker.finished(seg, *result, worker=0)
            if cancel.cancelled or manifest.pending():
                kept = len(segs) - len(manifest.pending())
                raise Interrupted(f"stopped ({cancel.reason}): {kept}/{len(segs)} segments kept "
                                  f"in {folder}; run the same command again to resume", None, 0)
            if asm.written != n:
                raise OutputError(f"{folder}: segments hold {asm.written} frames, expected {n}")
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt) and not cancel.cancelled:
                cancel.cancel("interrupted")
            partial = sink.abort()
            if partial is not None:
                say(f"{partial} holds the {asm.written} frames assembled so far")
            if isinstance(e, KeyboardInterrupt):
                kept = len(segs) - len(manifest.pending())
                raise Interrupted(f"stopped ({cancel.reason}): {kept}/{len(segs)} segments kept "
                                  f"in {folder}; run the same command again to resume",
                                  str(partial) if partial else None, asm.written) from None
            if isinstance(e, VsrkitError) and not isinstance(e, Interrupted):
                kept = len(segs) - len(manifest.pending())
                e.args = (f"{e.args[0] if e.args else e}; {kept}/{len(segs)} segments are kept "
                          f"in {folder}: run the same command again to resume",)
            raise
        emit(Event("finalizing", n, n, message=str(out)))
        final = sink.close()
    shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.monotonic() - t0
    emit(Event("done", n, n, n / elapsed if elapsed else None, 0.0, str(final)))
    return Result(input, final, n, elapsed, plan)


def describe_segments(segs: list[Segment], n: int, lookahead: int, workers: int,
                      devices: list[str] | None, opts: Options) -> str:
    """One line for the plan: how the video is cut and what the cuts cost."""
    extra = context_frames(segs, n, lookahead)
    kept = sorted({s.kept for s in segs})
    size = f"{kept[0]}" if len(kept) == 1 else f"{kept[0]}-{kept[-1]}"
    where = (", ".join(devices) if devices else f"{workers} Ray worker(s)" if opts.ray and
             not opts.dry_run else "a Ray cluster" if opts.ray else "1 device")
    return (f"{len(segs)} segment(s) of {size} frames on {where}; warm-up and look-ahead "
            f"recompute {extra} frames (+{100 * extra / n:.1f} %)")
