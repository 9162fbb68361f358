"""experiments=deepgeo_paper: the DeepGeo paper's case study as a recipe, ending with the sample-based
accuracy and area assessment against a reference layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepgeo_runner.config.options import run_options
from deepgeo_runner.config.schema import run_stages
from deepgeo_runner.config.validate import validate_config as validate
from tests.helpers import REPO


def test_the_recipe_states_the_papers_settings(tmp_path, compose):
    cfg = compose("experiments=deepgeo_paper", f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}")
    validate(cfg)
    opts = run_options(cfg, tmp_path)
    assert cfg.model._target_.endswith("FCN8s")
    assert list(opts.preprocessing.indices) == ["ndvi", "evi2"]
    assert str(opts.preprocessing.normalization) == "standard"
    assert str(opts.augmentation.name) == "d4_expand" and len(opts.augmentation.expand_ops) == 6  # x7: the chip + 6
    assert (opts.data.train_chips, opts.data.batch_size) == (2000, 20)
    assert cfg.optimizer.lr == pytest.approx(1e-4)
    assert opts.assess.reference == "demo"
    assert run_stages(cfg.stages, cfg.assess)[-2:] == ["assess", "report"]  # the cycle ends with the assessment


def test_the_demo_reference_is_refused_for_a_users_scene(tmp_path, tiny_scene, compose):
    from deepgeo_runner.core.errors import ConfigError

    cfg = compose("experiments=deepgeo_paper", "data=scene", f"data.image={tiny_scene['image']}",
                         f"data.labels={tiny_scene['labels']}", "data.classes=[forest,clearing]",
                         "data.band_names=[blue,green,red,nir]", f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match="assess.reference"):
        validate(cfg)


@pytest.mark.slow
def test_the_recipe_runs_on_the_demo_and_ends_with_the_assessment(tmp_path):
    """The recipe as it is, made small by debug=fast (composed last, it wins on sizes and epochs)."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "deepgeo_runner", "experiments=deepgeo_paper", "debug=fast",
           f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "assessment.json").read_text())
    assert set(result["per_class"]) == {"forest", "deforestation", "water"}
    assert Path(result["design"]["labels"].split()[-1]).name == "demo_reference.tif"
    total = sum(v["area_ha"] for v in result["per_class"].values())
    mapped = sum(v["mapped_area_ha"] for v in result["per_class"].values())
    assert total == pytest.approx(mapped, rel=1e-6)  # adjusted areas redistribute the mapped area
    assert 0 <= result["overall_accuracy"]["estimate"] <= 1
    assert "Map accuracy and area" in (run_dir / "report.html").read_text()
    assert (run_dir / "plots" / "assessment_area.png").is_file()
