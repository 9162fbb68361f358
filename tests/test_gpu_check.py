"""benchmarks/gpu_check.py --smoke: the one command that measures a GPU runs end to end on the CPU, writes
its table as JSON and names what it would measure on a GPU (its numbers are not checked: no timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_on_the_cpu_and_writes_its_table(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(out),
                           "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| section | case | reference | ours |" in proc.stdout
    assert "On a GPU this command measures" in proc.stdout and "2-process DDP" in proc.stdout
    result = json.loads(out.read_text())
    assert result["smoke"] and result["environment"]["device"].startswith("cpu")
    sections = [r["section"] for r in result["rows"]]
    assert sections.count("training") == 1 and sections.count("scene") == 1 and sections.count("ddp") == 1
    steps = {r["case"] for r in result["rows"] if r["section"] == "scene step"}
    assert {"read", "cut windows", "forward", "blend", "argmax, encode", "write rows",
            "close outputs (COG, overviews)"} <= steps
    training = next(r for r in result["rows"] if r["section"] == "training")
    assert training["reference"] > 0 and training["ours"] > 0
    assert "skipped: needs 2 GPUs" in next(r for r in result["rows"] if r["section"] == "ddp")["note"]
    assert "sha256" in next(r for r in result["rows"] if r["section"] == "scene")["note"]
