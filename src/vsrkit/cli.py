"""``vsrkit`` command line. ``upscale``'s flags are generated from ``Options`` fields, so the
CLI, the API and the UI share names, defaults and help."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import traceback
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from .errors import Interrupted, UsageError, VsrkitError
from .options import Options

EPILOG = ("exit codes: 0 ok, 1 bug, 2 usage, 3 input, 4 output, 5 weights, 6 resources, "
          "130 interrupted (docs/errors.md)")


def _base_type(tp: Any) -> type:
    """``int | None`` -> int, ``str`` -> str."""
    if isinstance(tp, str):
        tp = eval(tp, vars(typing))  # annotations are strings (from __future__ import annotations)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def add_option_flags(p: argparse.ArgumentParser) -> None:
    """One flag per ``Options`` field, grouped; defaults are SUPPRESSed so ``Options()``'s
    own defaults apply to everything not given."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Options):
        meta = f.metadata
        g = groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        tp = _base_type(f.type)
        help_ = meta["help"] + ("" if f.default in (None, False) else f" (default: {f.default})")
        if tp is bool:
            g.add_argument(flag, dest=f.name, action="store_true", default=argparse.SUPPRESS,
                           help=help_)
        else:
            g.add_argument(flag, dest=f.name, type=tp, default=argparse.SUPPRESS,
                           choices=meta.get("choices"), help=help_, metavar=f.name.upper())


def options_from_args(ns: argparse.Namespace) -> Options:
    names = {f.name for f in dataclasses.fields(Options)}
    return Options(**{k: v for k, v in vars(ns).items() if k in names}).validate()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, exit code 2 (UsageError)
        self.exit(2, f"vsrkit: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vsrkit", description="Upscale and restore videos with diffusion video "
                "super-resolution (FlashVSR, SeedVR2) or classical resampling.", epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"vsrkit {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = sub.add_parser("upscale", help="upscale a video, an image sequence or a folder of videos",
                        epilog=EPILOG)
    up.add_argument("input", help="video file, image folder/glob, or a folder of videos")
    up.add_argument("-o", "--output", help="output file, PNG folder, or output folder for a batch "
                    "(default: next to the input, name_x4.mkv)")
    _common(up)
    add_option_flags(up)

    pr = sub.add_parser("probe", help="show a video's streams, rate, frames, bit depth and color")
    pr.add_argument("input")
    pr.add_argument("--json", action="store_true", help="machine-readable output")
    _common(pr)

    mo = sub.add_parser("models", help="list models and whether their weights are present")
    msub = mo.add_subparsers(dest="models_command", parser_class=_Parser)
    dl = msub.add_parser("download", help="download a model's files into the Hugging Face cache")
    dl.add_argument("model")
    dl.add_argument("--variant", default=None)
    _common(mo)
    _common(dl)

    ui = sub.add_parser("ui", help="start the web UI")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost only)")
    ui.add_argument("--port", type=int, default=7860)
    ui.add_argument("--share-path", action="append", default=[],
                    help="server folder the UI may read inputs from (repeatable)")
    _common(ui)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vsrkit")
    except PackageNotFoundError:
        return "dev"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        code = _dispatch(ns)
    except Interrupted as e:
        print(f"vsrkit: {e}", file=sys.stderr)
        code = e.exit_code
    except VsrkitError as e:
        if ns.debug:
            traceback.print_exc()
        print(f"vsrkit: error: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        print("vsrkit: interrupted", file=sys.stderr)
        code = 130
    except Exception:  # a bug: the one case with a traceback
        traceback.print_exc()
        print("vsrkit: internal error; please report it with the traceback above "
              "(https://github.com/vsrkit/vsrkit/issues)", file=sys.stderr)
        code = 1
    return code


def _dispatch(ns: argparse.Namespace) -> int:
    if ns.command == "upscale":
        return _upscale(ns)
    if ns.command == "probe":
        return _probe(ns)
    if ns.command == "models":
        return _models(ns)
    if ns.command == "ui":
        from .ui.app import serve

        serve(host=ns.host, port=ns.port, share_paths=ns.share_path, quiet=ns.quiet)
        return 0
    raise UsageError(f"unknown command {ns.command}")


def _say(ns: argparse.Namespace):
    return (lambda m: None) if ns.quiet else (lambda m: print(m, file=sys.stderr))


def _upscale(ns: argparse.Namespace) -> int:
    from .api import Upscaler, upscale_folder
    from .io.source import is_image_sequence
    from .progress import CancelToken, TerminalProgress

    opts = options_from_args(ns)
    say = _say(ns)
    cancel = CancelToken()
    _install_signal_handlers(cancel)
    progress = None if ns.quiet else TerminalProgress()
    src = Path(ns.input)
    if src.is_dir() and not is_image_sequence(src):
        up = Upscaler(options=opts)
        try:
            res = upscale_folder(src, ns.output, upscaler=up, on_event=progress, cancel=cancel,
                                 notice=say)
        finally:
            up.close()
        print(res.table())
        return 0 if res.count("failed") == 0 else 3
    up = Upscaler(options=opts)
    try:
        result = up.upscale(src, ns.output, on_event=progress, cancel=cancel, notice=say)
    finally:
        up.close()
    if opts.dry_run:
        print("\n".join(result.plan.describe()))
        return 0
    busy = ", ".join(f"{k} {v:.1f} s" for k, v in result.stages.items())
    say(f"wrote {result.output}: {result.frames} frames in {result.seconds:.1f} s "
        f"({result.fps:.2f} fps)" + (f"; busy: {busy}" if busy else ""))
    return 0


def _install_signal_handlers(cancel) -> None:
    """First Ctrl-C / SIGTERM: stop at the next frame and finalize a partial file. A second
    Ctrl-C: stop at once."""

    def handler(signum: int, frame: Any) -> None:
        if cancel.cancelled and signum == signal.SIGINT:
            raise KeyboardInterrupt
        cancel.cancel(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _probe(ns: argparse.Namespace) -> int:
    from .io.probe import format_probe, probe

    info = probe(ns.input)
    print(json.dumps(info, indent=2, default=str) if ns.json else format_probe(info))
    return 0


def _models(ns: argparse.Namespace) -> int:
    from . import engines, hub

    if ns.models_command == "download":
        opts = Options(model=ns.model, variant=ns.variant).validate()
        engine = engines.create(opts)
        files = engine.weight_files()
        if not files:
            print(f"{ns.model} needs no weights")
            return 0
        for name, path in hub.download(files).items():
            print(f"{name}: {path}")
        return 0
    rows = [("model", "family", "weights", "description")]
    for e in engines.MODELS.values():
        if e.hidden:
            continue
        try:
            status = engines.create(Options(model=e.id)).weights_status()
        except VsrkitError as err:
            status = f"unavailable ({err})"
        rows.append((e.id, e.family, status, e.description))
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(3)) + "  " + r[3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
