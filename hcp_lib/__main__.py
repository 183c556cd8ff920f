"""Command line: ``python -m hcp_lib run | book | params``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import config


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise config.ParameterError(f"-p {pair!r}: expected key=value, e.g. -p n_topics=8")
        overrides[key.strip()] = value.strip()
    return overrides


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hcp_lib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the notebooks in order with papermill")
    run.add_argument(
        "--scale",
        default=None,
        help=f"one of {', '.join(config.SCALES)} (default {config.DEFAULT_SCALE}; with --only, the run's own)",
    )
    run.add_argument(
        "--seed", default=None, help="seed for every random choice (default 42; with --only, the run's own)"
    )
    run.add_argument("--out", default=str(config.DEFAULT_RUN_DIR), help="run folder (default %(default)s)")
    run.add_argument(
        "--only",
        metavar="NN",
        help="rerun one notebook (e.g. 03) in an existing run folder, with that run's parameters (from its manifest)",
    )
    run.add_argument(
        "-p",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a notebook parameter (repeatable); `python -m hcp_lib params` lists them",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="run every notebook, even those whose inputs, parameters and code are unchanged since the folder's "
        "last run (by default their results are reused)",
    )

    book = commands.add_parser("book", help="build the Jupyter Book from a run folder")
    book.add_argument("--run", default=str(config.DEFAULT_RUN_DIR), help="run folder (default %(default)s)")
    book.add_argument("--out", default=str(config.OUTPUTS_DIR / "book"), help="book folder (default %(default)s)")

    commands.add_parser("params", help="list the notebook parameters, their defaults and allowed values")
    return parser


def _print_params() -> None:
    for p in config.PARAMS.values():
        scaled = "".join(f", {s}: {v}" for s, v in p.scale_defaults.items())
        print(f"{p.name:24s} default {p.default!r}{scaled}; {p.allowed()}\n{'':24s} {p.help}")


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        if args.command == "params":
            _print_params()
        elif args.command == "run":
            from .pipeline import run_pipeline

            started = time.perf_counter()
            manifest = run_pipeline(
                scale=args.scale,
                seed=args.seed,
                out=args.out,
                overrides=_parse_overrides(args.params),
                only=args.only,
                cache=not args.no_cache,
                progress=not args.no_progress,
            )
            reused = sum(n.get("cache") == "reused" for n in manifest["notebooks"]) if args.only is None else 0
            print(
                f"run finished in {time.perf_counter() - started:.1f} s: {Path(args.out).resolve()}"
                + (f" ({reused} notebooks reused from the folder's last run; --no-cache reruns them)" if reused else "")
            )
        elif args.command == "book":
            from .book import build_book

            index = build_book(args.run, args.out)
            print(f"book built; open {index}")
    except (config.ParameterError, RuntimeError, OSError, ValueError) as err:
        # One line (or the notebook's own report) instead of a traceback; OSError covers a
        # folder that cannot be written, or a path that is a file.
        message = (
            str(err) if not isinstance(err, OSError) or not err.filename else f"{err.filename}: {err.strerror or err}"
        )
        print(f"error: {message}", file=sys.stderr)
        from .pipeline import RunInterrupted

        if isinstance(err, RunInterrupted):
            return 128 + err.signum
        return 2 if isinstance(err, config.ParameterError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
