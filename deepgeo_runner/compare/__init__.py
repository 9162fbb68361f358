"""Comparing finished runs: the table, intervals and page a sweep leaves (``summary.*``).

Plain file reading and numbers; Hydra reaches it only through the callback in ``cli.py``.
"""

from deepgeo_runner.compare.aggregate import Group, Interval, aggregate, t_interval
from deepgeo_runner.compare.comparison import Comparison
from deepgeo_runner.compare.runs import RunRecord, is_run_dir, read_run, sweep_runs
from deepgeo_runner.compare.summary import compare, summarize_sweep, write_summary

__all__ = ["Comparison", "Group", "Interval", "RunRecord", "aggregate", "compare", "is_run_dir", "read_run",
           "summarize_sweep", "sweep_runs", "t_interval", "write_summary"]
