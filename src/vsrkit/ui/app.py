"""``vsrkit ui``: the Gradio page. It builds the same ``Options`` the CLI builds (the form is
generated from its fields) and hands jobs to ``jobs.JobQueue``; a timer polls the followed
job twice a second for progress and the live preview.

Everything the page shows that is more than wiring (HTML of the progress bar and the queue,
probe and plan text, the before/after pair) is a plain function here, testable without a
browser.
"""

from __future__ import annotations

import html
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool

import numpy as np  # noqa: E402

from .. import engines  # noqa: E402
from ..errors import VsrkitError  # noqa: E402
from ..options import Options  # noqa: E402
from ..progress import _hms  # noqa: E402
from . import form  # noqa: E402
from .jobs import Job, JobQueue  # noqa: E402
from .video import read_frame, resize_display, to_display  # noqa: E402

LOOPBACK = ("127.0.0.1", "localhost", "::1")
POLL_SECONDS = 0.5
COMPARE_SIDE = 1600  # [pixels] long side of the before/after pair sent to the page
THUMB_SIDE = 480
STATUS_LABELS = {"queued": "queued", "running": "running", "done": "done", "stopped": "stopped",
                 "failed": "failed", "cancelled": "cancelled"}


# -- text and pictures ---------------------------------------------------------------------
def _internal(e: Exception) -> str:
    import traceback

    traceback.print_exc(file=sys.stderr)
    return f"internal error ({type(e).__name__}: {e}); the server's log has the traceback"


def _error_box(msg: str) -> str:
    return f'<div class="vsr-msg vsr-error">{html.escape(msg)}</div>'


def probe_markdown(path: str | Path, name: str | None = None) -> str:
    """``vsrkit probe``'s text; an upload's temporary path shows as its file name."""
    from ..io.probe import format_probe, probe

    text = format_probe(probe(str(path)))
    if name is not None:
        text = text.replace(str(path), name)
    return "```text\n" + text + "\n```"


def plan_markdown(path: str | Path, opts: Options) -> str:
    """The engine's plan for this input, with the whole run's predicted time when the engine
    predicts a per-frame time."""
    from ..io.source import open_source

    with open_source(Path(path), opts) as src:
        engine = engines.create(opts)
        try:
            plan = engine.plan(src.spec, opts)
        finally:
            engine.close()
        frames = src.spec.frames
    lines = plan.describe()
    if plan.est_seconds_per_frame is not None and frames:
        lines.append(f"  predicted run: {_hms(plan.est_seconds_per_frame * frames)} for "
                     f"{frames} frames")
    elif frames:
        lines.append(f"  frames: {frames}")
    return "```text\n" + "\n".join(lines) + "\n```"


def progress_html(job: Job | None) -> str:
    if job is None:
        return ('<div class="vsr-progress vsr-idle"><div class="vsr-bar"><div class="vsr-fill" '
                'style="width:0%"></div></div><div class="vsr-stats">Idle: choose a video and '
                'press <b>Upscale</b>.</div></div>')
    frac = job.fraction
    pct = f"{frac * 100:.0f}%" if frac is not None else ""
    width = f"{(frac or 0) * 100:.1f}%"
    total = f"/{job.frames_total}" if job.frames_total else ""
    bits = [f'<span class="vsr-badge vsr-{job.status}">{html.escape(job.stage)}</span>']
    if pct:
        bits.append(f'<b class="vsr-pct">{pct}</b>')
    bits.append(f"{job.frames_done}{total} frames")
    if job.status == "running":
        bits.append(f"{job.fps:.2f} fps" if job.fps else "-- fps")
        bits.append(f"ETA {_hms(job.eta)}")
    elif job.elapsed is not None and job.status in ("done", "stopped"):
        fps = job.frames_done / job.elapsed if job.elapsed else 0
        bits.append(f"{_hms(job.elapsed)} at {fps:.2f} fps")
    title = f"Job #{job.id} · {html.escape(Path(job.display_input).name)} · {job.opts.model}"
    msg = ""
    if job.status == "failed":
        msg = _error_box(job.message)
    elif job.status == "stopped":
        what = (f"the partial file {job.output.name} holds {job.frames_done} frames"
                if job.output is not None else "no frames were written")
        msg = f'<div class="vsr-msg vsr-warn">Stopped: {html.escape(what)}.</div>'
    elif job.status == "cancelled":
        msg = f'<div class="vsr-msg vsr-warn">{html.escape(job.message)}</div>'
    elif job.status == "done" and job.output is not None:
        msg = f'<div class="vsr-msg vsr-ok">Wrote {html.escape(job.output.name)}</div>'
    notes = "".join(f'<div class="vsr-msg vsr-note">{html.escape(n)}</div>' for n in job.notices)
    anim = " vsr-anim" if job.status == "running" else ""
    return (f'<div class="vsr-progress" data-status="{job.status}" '
            f'data-frames="{job.frames_done}">'
            f'<div class="vsr-title">{title}</div>'
            f'<div class="vsr-bar"><div class="vsr-fill{anim}" style="width:{width}"></div></div>'
            f'<div class="vsr-stats">{" · ".join(bits)}</div>{msg}{notes}</div>')


def queue_html(jobs: Sequence[Job], followed: int | None) -> str:
    if not jobs:
        return '<div class="vsr-queue-empty">No jobs yet.</div>'
    rows = []
    for j in reversed(jobs):
        frac = j.fraction
        prog = f"{frac * 100:.0f}%" if frac is not None else ""
        cls = ' class="vsr-followed"' if j.id == followed else ""
        rows.append(
            f"<tr{cls}><td>#{j.id}</td><td>{html.escape(Path(j.display_input).name)}</td>"
            f"<td>{html.escape(j.opts.model)}</td>"
            f'<td><span class="vsr-badge vsr-{j.status}">{STATUS_LABELS[j.status]}</span></td>'
            f"<td>{prog}</td><td>{j.frames_done}"
            f"{'/' + str(j.frames_total) if j.frames_total else ''}</td>"
            f"<td>{_hms(j.elapsed) if j.elapsed is not None else ''}</td></tr>")
    return ('<table class="vsr-queue"><thead><tr><th>job</th><th>input</th><th>model</th>'
            "<th>status</th><th>progress</th><th>frames</th><th>time</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def compare_pair(job: Job, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Input frame ``index`` (nearest-neighbour, at the output's size) and output frame
    ``index``, both capped to COMPARE_SIDE for the page."""
    assert job.output is not None
    out = to_display(read_frame(job.output, index), COMPARE_SIDE)
    src = to_display(read_frame(job.input, index, job.opts))
    return resize_display(src, out.shape[:2], nearest=True), out


def thumbnail(path: str | Path) -> np.ndarray:
    return to_display(read_frame(path, 0), THUMB_SIDE)


def device_summary() -> str:
    import torch

    if torch.cuda.is_available():
        names = [f"{torch.cuda.get_device_name(i)} "
                 f"({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
                 for i in range(torch.cuda.device_count())]
        return " · ".join(names)
    return "CPU only (no CUDA device): diffusion models will be very slow"


# -- the page --------------------------------------------------------------------------------
CSS = """
.gradio-container { max-width: 1280px !important; margin: 0 auto; }
#vsr-header { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap;
  padding: 14px 4px 6px; border-bottom: 1px solid var(--border-color-primary); margin-bottom: 6px; }
#vsr-header .brand { font-size: 28px; font-weight: 800; letter-spacing: -0.5px;
  background: linear-gradient(90deg, #4f46e5, #0ea5e9); -webkit-background-clip: text;
  background-clip: text; color: transparent; }
#vsr-header .tag { color: var(--body-text-color-subdued); font-size: 15px; }
#vsr-header .device { margin-left: auto; font-size: 13px; color: var(--body-text-color-subdued);
  border: 1px solid var(--border-color-primary); border-radius: 999px; padding: 2px 10px; }
.vsr-panel-title { font-weight: 700; font-size: 15px; margin: 2px 0 4px; }
.vsr-progress { padding: 6px 2px; }
.vsr-title { font-weight: 600; margin-bottom: 6px; }
.vsr-bar { height: 14px; border-radius: 7px; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); overflow: hidden; }
.vsr-fill { height: 100%; background: linear-gradient(90deg, #4f46e5, #0ea5e9);
  transition: width .4s ease; }
.vsr-fill.vsr-anim { background-size: 40px 40px; background-image:
  linear-gradient(45deg, rgba(255,255,255,.18) 25%, transparent 25%, transparent 50%,
  rgba(255,255,255,.18) 50%, rgba(255,255,255,.18) 75%, transparent 75%, transparent),
  linear-gradient(90deg, #4f46e5, #0ea5e9); animation: vsr-stripes 1s linear infinite; }
@keyframes vsr-stripes { from { background-position: 40px 0, 0 0; }
  to { background-position: 0 0, 0 0; } }
.vsr-stats { margin-top: 6px; font-size: 14px; color: var(--body-text-color); }
.vsr-pct { font-size: 15px; }
.vsr-badge { display: inline-block; font-size: 12px; font-weight: 600; padding: 1px 8px;
  border-radius: 999px; background: #e0e7ff; color: #3730a3; }
.vsr-badge.vsr-done { background: #dcfce7; color: #166534; }
.vsr-badge.vsr-failed { background: #fee2e2; color: #991b1b; }
.vsr-badge.vsr-stopped, .vsr-badge.vsr-cancelled { background: #fef3c7; color: #92400e; }
.vsr-badge.vsr-queued { background: #f1f5f9; color: #475569; }
.vsr-msg { margin-top: 8px; padding: 8px 12px; border-radius: 8px; font-size: 14px; }
.vsr-error { background: #fef2f2; color: #991b1b; border: 1px solid #fecaca; }
.vsr-warn { background: #fffbeb; color: #92400e; border: 1px solid #fde68a; }
.vsr-ok { background: #f0fdf4; color: #166534; border: 1px solid #bbf7d0; }
.vsr-note { background: var(--background-fill-secondary); color: var(--body-text-color-subdued); }
.vsr-queue { width: 100%; border-collapse: collapse; font-size: 14px; }
.vsr-queue th { text-align: left; font-weight: 600; color: var(--body-text-color-subdued);
  border-bottom: 1px solid var(--border-color-primary); padding: 4px 8px; }
.vsr-queue td { padding: 4px 8px; border-bottom: 1px solid var(--border-color-primary); }
.vsr-queue, .vsr-queue tr, .vsr-queue th, .vsr-queue td { border: none !important; }
.vsr-queue thead th, .vsr-queue tbody td {
  border-bottom: 1px solid var(--border-color-primary) !important; }
.vsr-queue tr.vsr-followed td { background: var(--background-fill-secondary); }
.vsr-queue-empty { color: var(--body-text-color-subdued); font-size: 14px; padding: 4px; }
#command textarea { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 13px; }
.vsr-checks > * { flex: 1 1 45% !important; min-width: 45% !important; }
footer { display: none !important; }
"""


def _theme():
    import gradio as gr

    return gr.themes.Soft(
        primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
        # system fonts only: the page works offline and never asks Google for fonts
        font=["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


def build_app(queue: JobQueue, share_paths: Sequence[str] = ()):
    import gradio as gr

    share_paths = [str(Path(p).expanduser().resolve()) for p in share_paths]
    fields = form.field_map()
    model0 = form.default_model()
    family0 = form.model_family(model0)

    with gr.Blocks(title="vsrkit · video super-resolution", analytics_enabled=False) as demo:
        followed = gr.State(None)  # job id this page shows
        seen = gr.State({})  # what the page already rendered for it (so polls send diffs)
        source = gr.State(None)  # (path, display name) of the chosen input

        gr.HTML('<div id="vsr-header"><span class="brand">vsrkit</span>'
                '<span class="tag">Video super-resolution with FlashVSR, SeedVR2 and classical '
                f'resamplers</span><span class="device">{html.escape(device_summary())}</span>'
                "</div>")
        with gr.Row(equal_height=False):
            # -- input -------------------------------------------------------------------
            with gr.Column(scale=5):
                gr.HTML('<div class="vsr-panel-title">1 · Input</div>')
                with gr.Tabs():
                    with gr.Tab("Upload"):
                        upload = gr.File(label="Video file", file_types=[
                            "video", ".mkv", ".mov", ".webm", ".y4m", ".avi", ".ts", ".m2ts"],
                            type="filepath", elem_id="upload", height=120)
                    with gr.Tab("Server file"):
                        if share_paths:
                            server = gr.Dropdown(form.list_shared(share_paths), value=None,
                                                 allow_custom_value=True, label="Path on the "
                                                 "server", info="under " + ", ".join(share_paths),
                                                 elem_id="server-path")
                            refresh = gr.Button("Refresh list", size="sm")
                        else:
                            server, refresh = None, None
                            gr.Markdown("Reading server files is off. Start the UI with "
                                        "`vsrkit ui --share-path DIR` to pick videos from DIR.")
                thumb = gr.Image(label="First frame", interactive=False, height=220,
                                 elem_id="thumb", buttons=[])
                probe_box = gr.Markdown("", elem_id="probe")

            # -- settings ------------------------------------------------------------------
            with gr.Column(scale=6):
                gr.HTML('<div class="vsr-panel-title">2 · Settings</div>')
                with gr.Row():
                    model = gr.Dropdown(form.model_choices(), value=model0, label="Model",
                                        info="`vsrkit models` lists them with their weights",
                                        elem_id="model", scale=3)
                    variant = gr.Dropdown(form.variant_choices(model0), value="default",
                                          label="Variant", info="default: the model's own",
                                          allow_custom_value=True, elem_id="variant", scale=2)
                with gr.Row():
                    size_mode = gr.Radio(list(form.SIZE_MODES), value=form.SIZE_MODES[0],
                                         label="Output size", elem_id="size-mode", scale=3)
                    container = gr.Dropdown(list(form.CONTAINERS), value="auto",
                                            label="Container", info="auto: the input's, else MKV",
                                            elem_id="container", scale=1)
                with gr.Row():
                    ns = form.native_scale(model0)
                    scale = gr.Dropdown(form.scale_choices(ns), value="native",
                                        allow_custom_value=True, label="Scale ×",
                                        info=fields["scale"].metadata["help"], elem_id="scale")
                    resolution = gr.Dropdown(["720", "1080", "1440", "2160"], value="1080",
                                             allow_custom_value=True, label="Short side (px)",
                                             info=fields["resolution"].metadata["help"],
                                             visible=False, elem_id="resolution")
                    width = gr.Textbox("", label="Width (px)", placeholder="keep aspect",
                                       info=fields["width"].metadata["help"], visible=False)
                    height = gr.Textbox("", label="Height (px)", placeholder="keep aspect",
                                        info=fields["height"].metadata["help"], visible=False)
                adv: dict[str, Any] = {}
                group_boxes: dict[str, Any] = {}
                with gr.Accordion("Advanced options (same names, defaults and help as the CLI)",
                                  open=False, elem_id="advanced"):
                    for group, group_fields in form.advanced_groups().items():
                        visible = group not in form.FAMILY_GROUPS or group == family0
                        with gr.Accordion(form.GROUP_TITLES.get(group, group), open=False,
                                          visible=visible) as box:
                            group_boxes[group] = box
                            boxes = [f for f in group_fields
                                     if form.widget_kind(f) == "checkbox"]
                            with gr.Row():
                                for f in group_fields:
                                    if f not in boxes:
                                        adv[f.name] = _widget(gr, f)
                            if boxes:  # switches apart, two to a line, so labels stay legible
                                with gr.Row(elem_classes="vsr-checks"):
                                    for f in boxes:
                                        adv[f.name] = _widget(gr, f)
                with gr.Row():
                    plan_btn = gr.Button("Check plan", variant="secondary", elem_id="plan-btn")
                    start_btn = gr.Button("Upscale", variant="primary", elem_id="start")
                message = gr.HTML("", elem_id="message")
                plan_box = gr.Markdown("", elem_id="plan")

        # -- run -----------------------------------------------------------------------------
        gr.HTML('<div class="vsr-panel-title">3 · Run</div>')
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                progress = gr.HTML(progress_html(None), elem_id="progress")
                stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False,
                                     size="sm")
            with gr.Column(scale=7):
                with gr.Row():
                    live_in = gr.Image(label="Input (live)", interactive=False, height=240,
                                       elem_id="live-in", buttons=[])
                    live_out = gr.Image(label="Output (live)", interactive=False, height=240,
                                        elem_id="live-out", buttons=[])
        # -- result ----------------------------------------------------------------------------
        gr.HTML('<div class="vsr-panel-title">4 · Result</div>')
        with gr.Row(equal_height=False):
            with gr.Column(scale=6):
                video = gr.Video(label="Output", interactive=False, elem_id="result-video",
                                 loop=True, height=360)
                download = gr.DownloadButton("Download result", visible=False,
                                             variant="primary", elem_id="download")
            with gr.Column(scale=6):
                compare = gr.ImageSlider(label="Before / after (drag the handle)",
                                         interactive=False, elem_id="compare", max_height=360,
                                         buttons=["fullscreen"])
                frame = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="compare-frame",
                                  interactive=False)
        command = gr.Textbox("", label="Reproduce with the CLI", elem_id="command",
                             interactive=False, lines=1, buttons=["copy"],
                             placeholder="the command line of the finished run")
        gr.HTML('<div class="vsr-panel-title">Queue</div>')
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                queue_box = gr.HTML(queue_html([], None), elem_id="queue")
            with gr.Column(scale=1, min_width=160):
                follow = gr.Dropdown([], value=None, label="Show job", elem_id="follow",
                                     allow_custom_value=False)

        # -- wiring ---------------------------------------------------------------------------
        adv_names = list(adv)

        def collect(model_v, variant_v, mode_v, scale_v, res_v, w_v, h_v, *adv_vals):
            values = {"model": model_v, "variant": variant_v, "scale": scale_v,
                      "resolution": res_v, "width": w_v, "height": h_v,
                      **dict(zip(adv_names, adv_vals))}
            return form.build_options(values, mode_v)

        form_inputs = [model, variant, size_mode, scale, resolution, width, height,
                       *adv.values()]

        def on_upload(path):
            if not path:
                return None, None, "", ""
            return _input_chosen(path, Path(path).name)

        def on_server(path):
            if not path:
                return None, None, "", ""
            try:
                real = form.check_share_path(path, share_paths)
            except VsrkitError as e:
                return None, None, "", _error_box(str(e))
            return _input_chosen(str(real), str(real))

        def _input_chosen(path, name):
            try:
                return (path, name), thumbnail(path), probe_markdown(path, name), ""
            except VsrkitError as e:
                return None, None, "", _error_box(str(e))

        chosen = [upload.change(on_upload, [upload], [source, thumb, probe_box, message])]
        if server is not None:
            chosen.append(server.change(on_server, [server], [source, thumb, probe_box, message]))
            refresh.click(lambda: gr.update(choices=form.list_shared(share_paths)), None, [server])

        def on_model(m):
            ns = form.native_scale(m)
            fam = form.model_family(m)
            boxes = [gr.update(visible=(g not in form.FAMILY_GROUPS or g == fam))
                     for g in group_boxes]
            return (gr.update(choices=form.variant_choices(m), value="default"),
                    gr.update(choices=form.scale_choices(ns), value="native"), *boxes)

        chosen.append(model.change(on_model, [model], [variant, scale, *group_boxes.values()]))
        size_mode.change(lambda m: (gr.update(visible=m == form.SIZE_MODES[0]),
                                    gr.update(visible=m == form.SIZE_MODES[1]),
                                    gr.update(visible=m == form.SIZE_MODES[2]),
                                    gr.update(visible=m == form.SIZE_MODES[2])),
                         [size_mode], [scale, resolution, width, height])

        def on_plan(src, *vals):
            if src is None:
                return "", _error_box("choose a video first (upload one or pick a server file)")
            try:
                return plan_markdown(src[0], collect(*vals)), ""
            except VsrkitError as e:
                return "", _error_box(str(e))
            except Exception as e:  # a bug: a readable line here, the traceback in the log
                return "", _error_box(_internal(e))

        plan_btn.click(on_plan, [source, *form_inputs], [plan_box, message])

        def auto_plan(src, *vals):  # after a new input or model: quietly, only when it works
            if src is None:
                return ""
            try:
                return plan_markdown(src[0], collect(*vals))
            except Exception:  # noqa: BLE001 - best effort; "Check plan" reports the reason
                return ""

        for event in chosen:
            event.then(auto_plan, [source, *form_inputs], [plan_box], show_progress="hidden")

        def on_start(src, cont, *vals):
            if src is None:
                return gr.skip(), gr.skip(), _error_box("choose a video first (upload one or "
                                                        "pick a server file)"), gr.skip()
            try:
                opts = collect(*vals)
                plan = plan_markdown(src[0], opts)
                job = queue.submit(src[0], opts, display_input=src[1],
                                   container=None if cont == "auto" else cont)
            except VsrkitError as e:
                return gr.skip(), gr.skip(), _error_box(str(e)), gr.skip()
            except Exception as e:  # a bug: a readable line here, the traceback in the log
                return gr.skip(), gr.skip(), _error_box(_internal(e)), gr.skip()
            return job.id, {}, "", plan

        start_btn.click(on_start, [source, container, *form_inputs],
                        [followed, seen, message, plan_box])

        def on_stop(jid):
            job = queue.get(jid)
            if job is not None and queue.stop(jid):
                return ('<div class="vsr-msg vsr-warn">Stopping at the next frame; the frames '
                        "done so far are kept as a partial file.</div>")
            return gr.skip()

        stop_btn.click(on_stop, [followed], [message], concurrency_limit=None)

        def on_follow(jid):
            return (jid, {}) if jid else (gr.skip(), gr.skip())

        follow.input(on_follow, [follow], [followed, seen])

        poll_outputs = [progress, stop_btn, live_in, live_out, video, download, compare, frame,
                        command, queue_box, follow, seen]

        def poll(jid, seen_v):
            return _poll(queue, jid, dict(seen_v or {}))

        timer = gr.Timer(POLL_SECONDS)
        timer.tick(poll, [followed, seen], poll_outputs, concurrency_limit=None,
                   show_progress="hidden", queue=False)

        def on_frame(jid, index):
            job = queue.get(jid)
            if job is None or job.output is None:
                return gr.skip()
            try:
                return compare_pair(job, int(index))
            except VsrkitError as e:
                gr.Warning(str(e))
                return gr.skip()

        frame.release(on_frame, [followed, frame], [compare])
    return demo


def _widget(gr, f):
    """One advanced option as a widget: label = the CLI flag, info = its help."""
    kind = form.widget_kind(f)
    label = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    info = f.metadata["help"]
    if kind == "checkbox":
        return gr.Checkbox(value=f.default, label=label, info=info, min_width=220)
    if kind == "dropdown":
        return gr.Dropdown(list(f.metadata["choices"]), value=f.default, label=label,
                           info=info, min_width=220)
    if kind in ("int", "float") and f.default is not None:
        return gr.Number(f.default, label=label, info=info, min_width=220,
                         precision=0 if kind == "int" else None)
    return gr.Textbox(f.default or "", label=label, info=info, min_width=220,
                      placeholder="default" if f.default is None else None)


def _poll(queue: JobQueue, jid: int | None, seen: dict) -> tuple:
    """One timer tick: what changed since the last tick, as Gradio updates (skip = unchanged).
    Order: progress, stop, live_in, live_out, video, download, compare, frame, command, queue,
    follow, seen."""
    import gradio as gr

    jobs = queue.jobs()
    job = queue.get(jid)
    skip = gr.skip()
    ids = [j.id for j in jobs]
    follow = skip
    if seen.get("ids") != ids or seen.get("followed") != jid:
        follow = gr.update(choices=[(f"#{i}", i) for i in reversed(ids)], value=jid)
        seen["ids"], seen["followed"] = ids, jid
    qhtml = queue_html(jobs, jid)
    if seen.get("queue") == qhtml:
        qhtml_out = skip
    else:
        qhtml_out, seen["queue"] = qhtml, qhtml
    if job is None:
        return (progress_html(None), skip, skip, skip, skip, skip, skip, skip, skip, qhtml_out,
                follow, seen)

    phtml = progress_html(job)
    progress = skip if seen.get("progress") == phtml else phtml
    seen["progress"] = phtml
    running = not job.is_finished
    stop = skip if seen.get("stop") == running else gr.update(interactive=running)
    seen["stop"] = running
    live_in = live_out = skip
    if job.preview is not None and seen.get("preview") != job.preview_version:
        live_in, live_out = job.preview
        seen["preview"] = job.preview_version
    video = download = compare = frame = command = skip
    if job.command and seen.get("command") != job.command:
        command = seen["command"] = job.command
    if job.is_finished and not seen.get("final"):
        seen["final"] = True
        if job.output is not None and job.output.exists():
            video = str(job.playable) if job.playable else None
            what = "Download result" if job.status == "done" else \
                f"Download partial file ({job.frames_done} frames)"
            download = gr.update(value=str(job.output), label=f"{what} · {job.output.name}",
                                 visible=True)
            n = max(job.frames_done, 1)
            mid = n // 2
            frame = gr.update(minimum=0, maximum=n - 1, value=mid, interactive=n > 1)
            try:
                compare = compare_pair(job, mid)
            except VsrkitError as e:
                job.notices.append(f"no before/after view: {e}")
        else:
            video, compare = None, None
            download = gr.update(visible=False)
    elif not job.is_finished and seen.get("final") is None:
        seen["final"] = False  # a new job: clear the last one's result
        video, compare, download = None, None, gr.update(visible=False)
        if job.preview is None:
            live_in = live_out = None
    return (progress, stop, live_in, live_out, video, download, compare, frame, command,
            qhtml_out, follow, seen)


def serve(host: str = "127.0.0.1", port: int = 7860, share_paths: Sequence[str] = (),
          quiet: bool = False) -> None:
    """Run the page until Ctrl-C. Binding beyond localhost prints a warning: the page has no
    login, and whoever reaches it can run jobs and read the shared folders."""
    if host not in LOOPBACK:
        print(f"vsrkit: warning: the UI listens on {host}:{port}, beyond this machine; it has no "
              "login: anyone who reaches it can run jobs on this GPU"
              + (f" and read {', '.join(share_paths)}" if share_paths else ""), file=sys.stderr)
    for p in share_paths:
        if not Path(p).expanduser().is_dir():
            from ..errors import UsageError

            raise UsageError(f"--share-path {p}: not a folder")
    from gradio.utils import get_upload_folder  # after the checks: importing it takes seconds

    # Outputs live in Gradio's own upload folder, so the page serves them without copying
    # (a 4K output can be gigabytes).
    work_dir = Path(get_upload_folder()) / "vsrkit-ui" / f"{os.getpid()}-{int(time.time())}"
    queue = JobQueue(work_dir)
    demo = build_app(queue, share_paths)
    demo.queue(default_concurrency_limit=4)
    if not quiet:
        print(f"vsrkit: UI on http://{'localhost' if host in LOOPBACK else host}:{port} "
              f"(outputs in {work_dir}; Ctrl-C stops)", file=sys.stderr)
    try:
        demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                    quiet=True, show_error=False, ssr_mode=False, footer_links=[],
                    allowed_paths=[str(work_dir)], theme=_theme(), css=CSS,
                    prevent_thread_lock=False)
    finally:
        queue.close()
