"""The cycle can end with ``export``: ``export.formats`` in the schema and its checks, one row of the stage
table, and the task writing the run's model.onnx and mlm.json into ``export/`` (off by default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepgeo_runner.config.schema import ExportConfig, run_stages
from deepgeo_runner.config.stages import BY_NAME, DEFAULT_STAGES, cycle
from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.errors import ConfigError
from tests.helpers import scene_overrides

OUT = "paths.output_dir=/tmp/nowhere"


def test_export_is_off_by_default_and_ends_the_cycle_when_formats_are_given(compose):
    cfg = compose(OUT)
    assert "export" not in DEFAULT_STAGES and list(cfg.export.formats) == []
    assessed = [*DEFAULT_STAGES[:-1], "assess", "report"]  # the built-in demo assesses its map by default
    assert run_stages(cfg.stages, cfg.assess, cfg.data, cfg.export) == assessed
    cfg = compose(OUT, "export.formats=[onnx,mlm]")
    validate_config(cfg)
    stages = run_stages(cfg.stages, cfg.assess, cfg.data, cfg.export)
    assert stages == [*assessed, "export"]
    assert [s.name for s in cycle(stages)][-1] == "export"  # after fit, test, predict and report
    assert BY_NAME["export"].weights and not BY_NAME["export"].cached and not BY_NAME["export"].needs
    cfg = compose(OUT, "stages=[fit,test,export]", "export.formats=[pt2]")
    assert run_stages(cfg.stages, cfg.assess, cfg.data, cfg.export) == ["fit", "test", "export"]  # as listed
    validate_config(cfg)


@pytest.mark.parametrize("overrides,match", [
    (["export.formats=[onnx,png]"], r"export formats \['png'\].*choose among \['onnx', 'pt2', 'mlm'\]"),
    (["export.formats=[mlm]"], r"export\.formats=\['mlm'\].*onnx or pt2 as well"),
    (["export.formats=[onnx,onnx]"], r"each format at most once"),
    (["export.formats=[onnx]", "export.tile=4"], r"export\.tile=4.*at least 8"),
    (["stages=[fit,test,export]"], r"export\.formats is empty.*export\.formats=\[onnx,mlm\]"),
    (["stages=[fit,test]", "export.formats=[onnx]"], r"does not export: add export to stages"),
    (["stages=[export]", "export.formats=[onnx]"], r"without 'fit' need trained weights.*predict\.checkpoint"),
])
def test_bad_export_options_are_named_before_anything_runs(compose, overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(compose(OUT, *overrides))


def test_a_library_caller_gets_the_same_check():
    with pytest.raises(ConfigError, match=r"export\.formats"):
        ExportConfig(formats=["mlm"])
    assert ExportConfig(formats=["onnx", "mlm"], tile=32).tile == 32


def test_the_export_task_writes_the_runs_model_files(tiny_scene, tmp_path, compose):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    import json

    from deepgeo_runner.config.options import run_options
    from deepgeo_runner.ml.model_card import ModelCard
    from deepgeo_runner.pipeline.artifacts import Artifacts
    from deepgeo_runner.pipeline.record import stages_to_run
    from deepgeo_runner.pipeline.run_state import RunState
    from deepgeo_runner.pipeline.runner import class_table, task_of
    from tests.helpers.tiny_model import make_checkpoint

    ckpt, _ = make_checkpoint(tmp_path / "trained", tiny_scene)
    run_dir = tmp_path / "run"
    cfg = compose("data=scene", *scene_overrides(tiny_scene), "stages=[export]", "export.formats=[onnx,mlm]",
                  f"predict.checkpoint={ckpt}", f"paths.output_dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}")
    validate_config(cfg)
    opts = run_options(cfg, run_dir)
    assert stages_to_run(opts) == ["export"]
    art = Artifacts()
    run = RunState(opts, run_dir, tmp_path / "cache", art, class_table(opts.data), ["export"])
    task_of(BY_NAME["export"])(run)
    assert sorted(art.exported) == ["mlm", "onnx"]
    assert art.exported["onnx"] == run_dir / "export" / "model.onnx" and art.exported["onnx"].is_file()
    assert not (run_dir / "export" / "model.pt2").exists()
    item = json.loads(Path(art.exported["mlm"]).read_text())
    assert any(a["href"].endswith("model.onnx") for a in item["assets"].values())
    import onnx

    props = {p.key: p.value for p in onnx.load(str(art.exported["onnx"])).metadata_props}
    card = ModelCard.from_json(props["model_card"])
    assert card.class_names == ["forest", "clearing"] and "export" in art.timings


@pytest.mark.slow
def test_a_run_ends_with_its_exported_model(tmp_path):
    """``deepgeo stages=[prepare,chips,fit,test,export] export.formats=[onnx,mlm]``: the fitted model's files
    in RUN/export, listed in provenance.json, its card with the training scene's footprint and the run's test
    metrics."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    import json

    import onnx

    from deepgeo_runner.ml.model_card import ModelCard
    from tests.helpers import deepgeo

    run = tmp_path / "run"
    deepgeo(run, tmp_path / "cache", "trainer.max_epochs=1", "stages=[prepare,chips,fit,test,export]",
            "export.formats=[onnx,mlm]")
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["stages"] == ["prepare", "chips", "fit", "test", "export"] and provenance["status"] == "completed"
    assert provenance["exported"] == {"onnx": str(run / "export" / "model.onnx"),
                                      "mlm": str(run / "export" / "mlm.json")}
    props = {p.key: p.value for p in onnx.load(str(run / "export" / "model.onnx")).metadata_props}
    card = ModelCard.from_json(props["model_card"])
    assert card.scene and card.scene.get("crs") and card.scene.get("bounds")  # learning.py's training_scene_facts
    assert card.metrics and card.metrics["accuracy"] == json.loads((run / "metrics.json").read_text())["accuracy"]
