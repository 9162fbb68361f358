"""``deepgeo-compare RUN_DIR... [-o OUT_DIR]``: the sweep summary for any set of finished runs.

Each argument is a run directory or a sweep directory (its numbered job folders are taken in
order). Writes ``summary.csv``, ``summary.json`` and ``summary.html`` into OUT_DIR: by default
the sweep directory when exactly one is given, else ``./comparison``. A folder that is neither a
run nor a sweep is refused with one line (exit status 2) before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from deepgeo_runner.compare.runs import RUN_MARKERS, is_run_dir, sweep_runs
from deepgeo_runner.compare.summary import compare, write_summary

DEFAULT_OUT = Path("comparison")


class NotARunError(ValueError):
    """An argument that names no run: neither a run directory nor a sweep directory of runs."""


def expand(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(run directories in the order given, sweep directories among the arguments)."""
    runs: list[Path] = []
    sweeps: list[Path] = []
    for arg in paths:
        path = Path(arg)
        if is_run_dir(path):
            runs.append(path)
        elif inner := sweep_runs(path):
            runs += inner
            sweeps.append(path)
        else:
            what = "does not exist" if not path.exists() else "is not a folder" if not path.is_dir() else (
                "is not a run directory (it has none of " + ", ".join(m.as_posix() for m in RUN_MARKERS)
                + ") nor a sweep directory holding runs")
            raise NotARunError(f"deepgeo-compare: '{path}' {what}.")
    unique = list(dict.fromkeys(p.resolve() for p in runs))
    return [next(p for p in runs if p.resolve() == u) for u in unique], sweeps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deepgeo-compare",
        description="Compare finished deepgeo runs: summary.csv, summary.json and a self-contained summary.html "
                    "(sortable table, 95 %% intervals over folds/seeds, key plots side by side).")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or sweep directories")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="folder for the summary (default: the sweep directory when one is given alone, "
                             f"else ./{DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        runs, sweeps = expand(args.runs)
    except NotARunError as exc:
        print(exc, file=sys.stderr)
        return 2
    lone_sweep = sweeps[0] if len(sweeps) == 1 and len(args.runs) == 1 else None
    out = args.out or lone_sweep or DEFAULT_OUT
    comparison = compare(runs, out, lone_sweep)
    try:
        paths = write_summary(comparison)
    except OSError as exc:
        print(f"deepgeo-compare: cannot write the summary in '{out}': {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{len(runs)} runs compared: {paths[-1]}")
    return 0


def console() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    console()
