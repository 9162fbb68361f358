"""``predict.image`` as many scenes: a list or a glob, each scene's outputs named after it,
finished scenes skipped on relaunch, a bad scene refused before any is predicted."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.scene_sources import check_scene_files, predict_scenes, scene_names, scene_sources
from deepgeo_runner.pipeline.scenes import RECORD, finished, scene_identity
from tests.helpers import REPO, deepgeo_ok, write_image, write_tile
from tests.helpers.models import make_checkpoint


def test_a_flat_list_is_scenes_and_a_nested_list_is_a_mosaic(tmp_path):
    a, b = write_image(tmp_path / "a.tif", np.ones((1, 4, 4), "f4")), write_image(tmp_path / "b.tif",
                                                                                   np.ones((1, 4, 4), "f4"))
    assert scene_sources([str(a), str(b)]) == [str(a), str(b)]
    assert scene_sources([[str(a), str(b)]]) == [[str(a), str(b)]]  # one mosaic
    assert scene_sources({"2020": str(a), "2021": [str(b)]}) == [{"2020": str(a), "2021": str(b)}]
    assert scene_sources([str(a), {"x": str(b)}]) == [str(a), {"x": str(b)}]
    assert scene_sources(str(tmp_path / "*.tif")) == [str(a), str(b)]  # a glob: each match a scene
    assert scene_sources([[str(tmp_path / "*.tif")]]) == [[str(a), str(b)]]  # a glob of tiles
    one = predict_scenes(str(a), tmp_path / "run")
    assert [(s.name, s.out_dir) for s in one] == [("a", tmp_path / "run")]  # one scene: today's names
    two = predict_scenes(f"{tmp_path}/*.tif", tmp_path / "run")
    assert [s.out_dir for s in two] == [tmp_path / "run" / "scenes" / "a", tmp_path / "run" / "scenes" / "b"]


def test_scene_names_are_distinct():
    assert scene_names(["x/2020/LC08.tif", "x/2021/LC08.tif", "c.tif"]) == ["2020_LC08", "2021_LC08", "c"]
    assert scene_names([["m/t1.tif", "m/t2.tif"], "u/t1.tif"]) == ["m_t1", "u_t1"]  # a mosaic: its first tile
    assert scene_names(["a/x.tif", "b/a/x.tif"]) == ["a_x", "a_x-2"]
    with pytest.raises(ConfigError, match="twice"):
        scene_names(["a.tif", "a.tif"])


@pytest.mark.parametrize("image,match", [
    ("{d}/none_*.tif", r"predict.image='.*none_\*.tif' matches no file"),
    (["{d}/a.tif", "{d}/missing.tif"], r"predict.image scene 1 \(missing\): '.*missing.tif': no such file"),
    ([["{d}/a.tif", "{d}/gone.tif"]], r"scene 0 \(a\): '.*gone.tif': no such file"),
    ([], r"predict.image=\[\] is not valid"),
])
def test_missing_scene_files_fail_at_config_time_naming_the_scene(tmp_path, image, match):
    write_image(tmp_path / "a.tif", np.ones((1, 4, 4), "f4"))

    def fill(v):
        return [fill(x) for x in v] if isinstance(v, list) else v.format(d=tmp_path)

    with pytest.raises(ConfigError, match=match):
        check_scene_files(fill(image))


def _deepgeo(run_dir: Path, ckpt: Path, image: str, *extra: str) -> str:
    proc = deepgeo_ok("stages=[predict]", f"predict.checkpoint={ckpt}", f"predict.image={image}", "predict.overlap=0",
                      f"hydra.run.dir={run_dir}", *extra, cwd=run_dir.parent, timeout=300)
    return proc.stdout + proc.stderr


@pytest.fixture
def two_scenes(tmp_path, tiny_scene) -> tuple[Path, Path, Path]:

    ckpt, _ = make_checkpoint(tmp_path, tiny_scene)
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    first = shutil.copy(tiny_scene["image"], scenes / "LT05_224063.tif")
    data = tiny_scene["data"][:, ::-1].copy()  # another scene: the same landscape upside down
    second = write_image(scenes / "LT05_224064.tif", data)
    return ckpt, Path(first), second


@pytest.mark.slow
def test_two_scenes_write_both_outputs_and_a_relaunch_skips_both(tmp_path, two_scenes, caplog):
    ckpt, first, second = two_scenes
    run_dir = tmp_path / "run"
    log = _deepgeo(run_dir, ckpt, f"[{first},{second}]", "predict.probabilities=uint8")
    outputs = {s: run_dir / "scenes" / s / "prediction.tif" for s in ("LT05_224063", "LT05_224064")}
    for path in outputs.values():
        with rasterio.open(path) as pred, rasterio.open(first) as src:
            assert (pred.crs, pred.transform, pred.shape) == (src.crs, src.transform, src.shape)
            assert set(np.unique(pred.read(1))) <= {1, 2, 255}
        assert (path.parent / "prediction_proba.tif").is_file() and (path.parent / RECORD).is_file()
        assert not (path.parent / "predict_input").exists()  # prepared stacks do not pile up
    with rasterio.open(outputs["LT05_224063"]) as a, rasterio.open(outputs["LT05_224064"]) as b:
        assert (a.read(1) != b.read(1)).any()  # two scenes, two maps
    assert "skipping" not in log
    mtimes = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and "scenes" in p.parts}

    log = _deepgeo(run_dir, ckpt, f"[{first},{second}]", "predict.probabilities=uint8")
    assert "skipping LT05_224063: done" in log and "skipping LT05_224064: done" in log
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing written again

    (outputs["LT05_224064"].parent / "prediction_proba.tif").unlink()  # an output lost: that scene again
    log = _deepgeo(run_dir, ckpt, f"{first.parent}/*.tif", "predict.probabilities=uint8")  # the same, as a glob
    assert "skipping LT05_224063: done" in log and "skipping LT05_224064" not in log
    assert (outputs["LT05_224064"].parent / "prediction_proba.tif").is_file()
    assert outputs["LT05_224063"].stat().st_mtime_ns == mtimes[outputs["LT05_224063"]]

    scene = predict_scenes(f"{first.parent}/*.tif", run_dir)[0]
    options = {**json.loads((scene.out_dir / RECORD).read_text())["options"], "probabilities": "float16"}
    with caplog.at_level(logging.INFO, logger="deepgeo_runner.pipeline.scenes"):
        assert not finished(scene, scene_identity(scene, ckpt, options))  # other options: predicted again
    assert "predicting LT05_224063 again: its options changed" in caplog.text


def test_a_bad_scene_fails_before_any_scene_is_predicted(tmp_path, two_scenes, compose):
    from deepgeo_runner.config.options import run_options
    from deepgeo_runner.pipeline.predicting import apply_checkpoint_stage

    ckpt, first, _ = two_scenes
    bad = write_image(tmp_path / "scenes" / "three_bands.tif", np.ones((3, 48, 48), "f4"))
    cfg = compose("stages=[predict]", f"predict.checkpoint={ckpt}", f"predict.image=[{first},{bad}]",
                         f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={REPO / 'outputs'}")
    with pytest.raises(InputDataError, match=r"predict.image scene 'three_bands': '.*three_bands.tif' has 3 bands "
                                             r"but the checkpoint was trained on 4"):
        apply_checkpoint_stage(run_options(cfg), tmp_path / "run")
    assert not list((tmp_path / "run").rglob("prediction*.tif"))


def test_a_nested_list_is_one_mosaicked_scene_with_the_usual_names(tmp_path, tiny_scene, compose):
    from deepgeo_runner.config.options import run_options
    from deepgeo_runner.pipeline.predicting import apply_checkpoint_stage

    ckpt, _ = make_checkpoint(tmp_path, tiny_scene)
    data = np.where(tiny_scene["data"] == -9999.0, 0.01, tiny_scene["data"]).astype("f4")
    left = write_tile(tmp_path / "left.tif", data[:, :, :24].copy(), col=0, row=0)
    right = write_tile(tmp_path / "right.tif", data[:, :, 24:].copy(), col=24, row=0)
    cfg = compose("stages=[predict]", f"predict.checkpoint={ckpt}", f"predict.image=[[{left},{right}]]",
                         f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={REPO / 'outputs'}")
    art = apply_checkpoint_stage(run_options(cfg), tmp_path / "run")
    assert art.prediction == tmp_path / "run" / "prediction.tif"
    with rasterio.open(art.prediction) as pred:
        assert pred.shape == (48, 48)  # both tiles
    assert (tmp_path / "run" / RECORD).is_file() and (tmp_path / "run" / "predict_input").is_dir()


@pytest.mark.slow
def test_under_the_submitit_launcher_each_scene_is_its_own_job(tmp_path, two_scenes):
    """What launcher=slurm does on a cluster, with submitit's local executor: a sweep over
    predict.image gives one job per scene, each its own folder with the usual names."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="needs hydra-submitit-launcher: pip install 'deepgeo-runner[slurm]'")
    ckpt, first, second = two_scenes
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "deepgeo_runner.cli", "-m", "hydra/launcher=submitit_local", "stages=[predict]",
           f"predict.checkpoint={ckpt}", f"predict.image={first},{second}", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, scene in (("0", first), ("1", second)):
        assert json.loads((sweep / job / RECORD).read_text())["image"] == str(scene)
        assert (sweep / job / "prediction.tif").is_file()
    assert list((sweep / ".submitit").iterdir())  # submitit ran the jobs


def test_a_redo_killed_half_way_is_not_skipped_later(tmp_path, monkeypatch):
    """Scene done for options X; a launch with options Y dies while rewriting it; a launch with X
    again must predict it again: its outputs may now be Y's, whatever the old record says."""
    from types import SimpleNamespace

    from deepgeo_runner.pipeline import predicting, stage_options
    from deepgeo_runner.pipeline import scenes as scenes_module

    image = write_image(tmp_path / "a.tif", np.ones((1, 4, 4), "f4"))
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights")

    def opts(probabilities: str) -> SimpleNamespace:
        predict = SimpleNamespace(image=str(image), window=None, overlap=0.5, polygons=None, min_area_ha=0.0,
                                  labels=None, blend="hann", probabilities=probabilities, entropy=False, tta=False,
                                  amp=False, cog=False)
        return SimpleNamespace(predict=predict, data=SimpleNamespace(nodata=None))

    def options(o: SimpleNamespace) -> dict:
        return {**stage_options.predict_options(o), "window": None, "overlap": 0.5, "polygons": None,
                "min_area_ha": 0.0, "labels": None, "nodata": None}

    run_dir = tmp_path / "run"
    (scene,) = predict_scenes(str(image), run_dir)
    run_dir.mkdir()
    (run_dir / "prediction.tif").write_bytes(b"X's map")
    first = scene_identity(scene, ckpt, options(opts("none")))
    scenes_module.write_record(scene, first, [run_dir / "prediction.tif"])
    assert finished(scene, first)

    def killed(*args, **kwargs):
        (run_dir / "prediction.tif").write_bytes(b"Y's map")
        raise KeyboardInterrupt

    monkeypatch.setattr(predicting, "check_scenes_fit", lambda *a: None)
    monkeypatch.setattr(predicting, "_predict_one_scene", killed)
    with pytest.raises(KeyboardInterrupt):
        predicting.predict_new_scene(opts("uint8"), run_dir, None, {}, "cpu", ckpt)
    assert not finished(scene, first)


def test_edited_reference_labels_make_a_finished_scene_run_again(tmp_path):
    """prediction_metrics.json scores a scene against predict.labels: a changed labels file is a new
    identity, so a relaunch scores the scene again instead of keeping stale scores."""
    image = write_image(tmp_path / "a.tif", np.ones((1, 4, 4), "f4"))
    labels = tmp_path / "ref.gpkg"
    labels.write_bytes(b"first version")
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"weights")
    (scene,) = predict_scenes(str(image), tmp_path / "run")
    options = {"labels": str(labels), "window": None}
    before = scene_identity(scene, ckpt, options)
    assert scene_identity(scene, ckpt, options) == before
    labels.write_bytes(b"second, longer version")
    assert scene_identity(scene, ckpt, options) != before


def test_a_redo_removes_the_outputs_of_the_earlier_prediction(tmp_path):
    """A scene predicted again with fewer outputs keeps none of the old ones (a stale
    prediction_proba.tif beside a new map would be read as its probabilities)."""
    from deepgeo_runner.pipeline import scenes as scenes_module

    image = write_image(tmp_path / "a.tif", np.ones((1, 4, 4), "f4"))
    (scene,) = predict_scenes(str(image), tmp_path / "run")
    scene.out_dir.mkdir(parents=True)
    old = [scene.out_dir / "prediction.tif", scene.out_dir / "prediction_proba.tif"]
    for path in old:
        path.write_bytes(b"earlier run")
    outside = tmp_path / "keep.tif"
    outside.write_bytes(b"not ours")
    scenes_module.write_record(scene, {"checkpoint": None}, old)
    record = json.loads((scene.out_dir / RECORD).read_text())
    record["outputs"].append("../keep.tif")  # a record pointing outside its folder is not obeyed
    (scene.out_dir / RECORD).write_text(json.dumps(record))
    scenes_module.forget_record(scene)
    assert not (scene.out_dir / RECORD).exists()
    assert not any(path.exists() for path in old)
    assert outside.read_bytes() == b"not ours"
