"""A model that travels: deepgeo-export writes model.onnx, model.pt2 and mlm.json that predict like the checkpoint.

Tiny random networks on a small synthetic scene, CPU only. onnx/onnxruntime/onnxscript are the ``export``
extra: without them these tests skip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from deepgeo_runner.core.errors import ConfigError, InputDataError  # noqa: E402
from deepgeo_runner.export.graph import ExportError  # noqa: E402
from deepgeo_runner.export.run import export_model  # noqa: E402
from deepgeo_runner.ml.model_card import ModelCard  # noqa: E402
from tests.helpers.tiny_model import make_checkpoint, textured_scene  # noqa: E402

DATA = Path(__file__).parent / "data" / "mlm"
TILE = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """One tiny FCN-8s checkpoint (NDVI, standard statistics) on a 96² scene, exported in the three formats."""
    root = tmp_path_factory.mktemp("export")
    scene = textured_scene(root / "scene")
    ckpt, made = make_checkpoint(root / "run", scene, labels=scene["labels"])
    files = export_model(ckpt, root / "out").files
    return {"root": root, "scene": scene, "ckpt": ckpt, "files": files, **made}


def _metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_the_onnx_file_carries_deepness_keys_and_the_card(exported):
    meta = _metadata(exported["files"]["onnx"])
    values = {k: json.loads(v) for k, v in meta.items() if k != "model_card"}
    assert values["model_type"] == "Segmentor"
    assert values["class_names"] == {"0": "forest", "1": "clearing"}
    assert values["tile_size"] == values["tiles_size"] == TILE
    assert values["resolution"] == pytest.approx(3000.0)  # 30 m pixels, in cm
    # Deepness divides by 255 and then standardizes: mean 0, std 1/255 hand the graph the raw values back
    assert values["standardization_mean"] == [0.0] * 4
    assert np.allclose(values["standardization_std"], 1 / 255)
    assert values["seg_thresh"] == 0.0 and values["seg_small_segment"] == 0 and "tiles_overlap" in values
    card = ModelCard.from_json(meta["model_card"])
    assert card.features == ("blue", "green", "red", "nir", "ndvi") and card.class_ids == [1, 2]
    session = ort.InferenceSession(str(exported["files"]["onnx"]), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.shape[1:] == [4, TILE, TILE] and not isinstance(inp.shape[0], int)  # dynamic batch
    for batch in (1, 3):
        p = session.run(None, {inp.name: np.random.rand(batch, 4, TILE, TILE).astype(np.float32)})[0]
        assert p.shape == (batch, 2, TILE, TILE) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def _chips(exported: dict, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Raw windows (nodata as NaN) and the same windows of the prepared stack (nodata as 0), as predict reads them."""
    from deepgeo_runner.geo.raster_io import valid_mask

    rng = np.random.default_rng(1)
    with rasterio.open(exported["scene"]["image"]) as raw_src, rasterio.open(exported["prepared"].path) as prep_src:
        raw, prep = raw_src.read().astype(np.float32), prep_src.read()
        raw = np.where(valid_mask(raw, raw_src.nodata), raw, np.nan)
        prep = np.where(valid_mask(prep, prep_src.nodata), prep, 0.0)
    corners = [(0, 0)] + [tuple(rng.integers(0, raw.shape[1] - TILE, 2)) for _ in range(n - 1)]
    return (np.stack([raw[:, r:r + TILE, c:c + TILE] for r, c in corners]),
            np.stack([prep[:, r:r + TILE, c:c + TILE] for r, c in corners]))


def test_onnx_and_pt2_probabilities_equal_the_checkpoints_on_the_same_chips(exported):
    from deepgeo_runner.export.pt2_file import load_pt2

    raw, prepared = _chips(exported)
    with torch.no_grad():
        reference = torch.softmax(exported["net"](torch.from_numpy(prepared)), dim=1).numpy()
    session = ort.InferenceSession(str(exported["files"]["onnx"]), providers=["CPUExecutionProvider"])
    onnx_p = session.run(None, {"raw_bands": raw})[0]
    assert np.abs(onnx_p - reference).max() <= 1e-4  # chip 0 holds the nodata corner
    module, card = load_pt2(exported["files"]["pt2"])
    with torch.no_grad():
        pt2_p = module(torch.from_numpy(raw)).numpy()
    assert np.abs(pt2_p - reference).max() <= 1e-4
    assert card == ModelCard.from_json(_metadata(exported["files"]["onnx"])["model_card"])


def test_whole_scene_maps_from_ckpt_onnx_and_pt2_agree(exported, tmp_path):
    from deepgeo_runner.stages.apply import apply_checkpoint

    maps = {}
    for kind, path in (("ckpt", exported["ckpt"]), ("onnx", exported["files"]["onnx"]),
                       ("pt2", exported["files"]["pt2"])):
        applied = apply_checkpoint(path, exported["scene"]["image"], tmp_path / kind, overlap=0.5, batch_size=8,
                                   progress=False, probabilities="uint8")
        with rasterio.open(applied.prediction) as src:
            maps[kind] = src.read(1)
            profile = (src.crs, src.transform, src.shape, src.tags().get("class_2"))
    with rasterio.open(exported["scene"]["image"]) as src:
        assert profile == (src.crs, src.transform, src.shape, "clearing")
    assert (maps["ckpt"][:8, :8] == 255).all() and len(np.unique(maps["ckpt"][8:, 8:])) == 3  # 2 classes + 255
    assert all(m[50, 60] == 255 for m in maps.values())  # an undefined NDVI is nodata in every map
    for kind in ("onnx", "pt2"):
        agree = float((maps[kind] == maps["ckpt"]).mean())
        assert agree >= 0.9999, f"{kind}: {agree:.6f} of the pixels agree with the checkpoint's map"


def test_deepness_preprocessing_from_the_onnx_metadata_alone_matches_our_map(exported, tmp_path):
    """QGIS Deepness, in numpy: tiles of ``tile_size`` overlapping by ``tiles_overlap`` %, zero padding at the
    far edges, ÷255 then its standardization, the class of highest probability, each tile's centre kept."""
    from deepgeo_runner.stages.apply import apply_checkpoint

    path = exported["files"]["onnx"]
    meta = {k: json.loads(v) for k, v in _metadata(path).items() if k != "model_card"}
    tile, overlap = meta["tile_size"], meta["tiles_overlap"]
    mean = np.asarray(meta["standardization_mean"], np.float32)
    std = np.asarray(meta["standardization_std"], np.float32)
    with rasterio.open(exported["scene"]["image"]) as src:
        image = src.read().transpose(1, 2, 0).astype(np.float32)  # H, W, C as QGIS hands it over
    h, w, _ = image.shape
    stride = tile - int(tile * overlap / 100)
    margin = (tile - stride) // 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    classes = np.zeros((h, w), dtype=np.int64)
    for r in range(0, max(h - tile + stride, 1), stride):
        for c in range(0, max(w - tile + stride, 1), stride):
            chunk = np.zeros((tile, tile, image.shape[2]), np.float32)
            part = image[r:r + tile, c:c + tile]
            chunk[:part.shape[0], :part.shape[1]] = part
            x = ((chunk[None] / 255.0) - mean) / std
            p = session.run(None, {"raw_bands": np.transpose(x, (0, 3, 1, 2)).astype(np.float32)})[0][0]
            r0, c0 = (0 if r == 0 else margin), (0 if c == 0 else margin)
            rows, cols = min(tile, h - r), min(tile, w - c)
            classes[r + r0:r + rows, c + c0:c + cols] = p.argmax(axis=0)[r0:rows, c0:cols]
    ids = np.asarray(ModelCard.from_json(_metadata(path)["model_card"]).class_ids)[classes]
    agree = {}
    for blend in ("center", "hann"):  # center: overlap-tile, each window's central square, as Deepness stitches
        ours = apply_checkpoint(path, exported["scene"]["image"], tmp_path / blend, overlap=overlap / 100,
                                batch_size=8, progress=False, blend=blend)
        with rasterio.open(ours.prediction) as src:
            ours_map = src.read(1)
        valid = ours_map != 255
        agree[blend] = float((ids[valid] == ours_map[valid]).mean())
    assert agree["center"] >= 0.9999, agree  # the same map, from the ONNX file's metadata alone
    assert agree["hann"] >= 0.95, agree  # blending differs only where windows disagree


def test_the_mlm_item_validates_against_the_extension_schema_and_describes_the_model(exported):
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")

    schemas = {"mlm-v1.5.2": "https://stac-extensions.github.io/mlm/v1.5.2/schema.json",
               "classification-v1.1.0": "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
               "processing-v1.1.0": "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
               "raster-v1.1.0": "https://stac-extensions.github.io/raster/v1.1.0/schema.json"}
    resources = []
    for name, uri in schemas.items():
        contents = json.loads((DATA / f"{name}.schema.json").read_text())
        contents.pop("$id", None)  # processing's v1.1.0 file names itself v1.0.0: register by its URL
        resource = referencing.Resource.from_contents(contents, default_specification=referencing.jsonschema.DRAFT7)
        resources.append((uri, resource))
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((DATA / "mlm-v1.5.2.schema.json").read_text())
    item = json.loads(exported["files"]["mlm"].read_text())
    jsonschema.Draft7Validator(schema, registry=registry).validate(item)
    inp, out = item["properties"]["mlm:input"][0], item["properties"]["mlm:output"][0]
    assert inp["bands"] == ["blue", "green", "red", "nir"] and inp["input"]["shape"] == [-1, 4, TILE, TILE]
    assert inp["value_scaling"] is None  # the graph normalizes: a runner must not scale again
    assert out["result"]["shape"] == [-1, 2, TILE, TILE]
    assert [c["name"] for c in out["classification:classes"]] == ["forest", "clearing"]
    assert {a["mlm:artifact_type"] for a in item["assets"].values()} == {"onnx", "torch.export.save"}
    prep = item["properties"]["mlm:hyperparameters"]["deepgeo.preparation"]
    assert prep["indices"] == ["ndvi"] and prep["normalization"]["method"] == "standard"
    broken = json.loads(json.dumps(item))
    broken["properties"]["mlm:output"][0]["result"]["shape"] = "wrong"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema, registry=registry).validate(broken)


def test_the_command_line_exports_chosen_formats(exported, tmp_path):
    from deepgeo_runner.export.cli import main

    assert main([str(exported["ckpt"]), "-o", str(tmp_path / "cli"), "--formats", "mlm"]) == 2  # nothing to describe
    assert not (tmp_path / "cli").exists() or not any((tmp_path / "cli").iterdir())
    assert main([str(exported["ckpt"]), "-o", str(tmp_path / "bad"), "--formats", "tflite"]) == 2


def test_a_crafted_pt2_is_refused_before_anything_runs(exported, tmp_path):
    import zipfile

    from deepgeo_runner.export.pt2_file import check_pt2, load_pt2

    source = exported["files"]["pt2"]

    def rewrite(name: str, edit) -> Path:
        out = tmp_path / name
        with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
            for item in zin.infolist():
                zout.writestr(item, edit(item.filename, zin.read(item.filename)))
        return out

    def pickled_weight(name: str, data: bytes) -> bytes:
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    def foreign_op(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            return data.replace(b"torch.ops.aten.softmax.int", b"builtins.exec")
        return data

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned.txt"), "w"))

    def pickled_inputs(name: str, data: bytes) -> bytes:
        if "/data/sample_inputs/" in name:
            import io

            buffer = io.BytesIO()
            torch.save(Payload(), buffer)
            return buffer.getvalue()
        return data

    for name, edit, match in (("weights.pt2", pickled_weight, "stored as a pickle"),
                              ("op.pt2", foreign_op, "builtins.exec"),
                              ("inputs.pt2", pickled_inputs, "sample inputs")):
        crafted = rewrite(name, edit)
        with pytest.raises(InputDataError, match=match):
            check_pt2(crafted)
        with pytest.raises(InputDataError, match="was refused"):
            load_pt2(crafted)
    assert not (tmp_path / "pwned.txt").exists()


def test_exported_models_refuse_what_they_cannot_do(exported, tmp_path):
    from deepgeo_runner.export.apply_exported import load_exported
    from deepgeo_runner.stages.apply import classify_like_checkpoint

    net, meta = load_exported(exported["files"]["onnx"])
    with pytest.raises(ConfigError, match=r"tiles of 16 px only.*predict.window=16"):
        classify_like_checkpoint(net, meta, exported["scene"]["image"], tmp_path / "p", tmp_path / "p.tif",
                                 window=32, overlap=0.5, batch_size=4, device="cpu", progress=False)
    with pytest.raises(ConfigError, match=r"export formats"):
        export_model(exported["ckpt"], tmp_path / "x", "onnx,png")


@pytest.mark.parametrize("net,match", [
    ("HistogramNet", r"model HistogramNet cannot be exported to ONNX: the operator aten\.histc\S* has no ONNX mapping"),
    ("TwoInputNet", r"model TwoInputNet takes 2 inputs \(x, days\).*not exported"),
])
def test_a_model_that_cannot_be_exported_is_named_with_its_operator_and_nothing_is_written(tmp_path, tiny_scene,
                                                                                            net, match):
    target = f"tests.helpers.tiny_model.{net}"
    ckpt, _ = make_checkpoint(tmp_path / "run", tiny_scene, model={"_target_": target})
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=match):
        export_model(ckpt, out, trusted_target=target)
    assert not out.exists() or not list(out.iterdir())


def test_the_runner_predicts_a_new_scene_with_model_onnx(exported, tmp_path, compose):
    """``deepgeo stages=[predict] predict.checkpoint=model.onnx predict.image=...``, and the config check
    saying what an exported model cannot do."""
    from deepgeo_runner.config.options import run_options
    from deepgeo_runner.config.validate import validate_config
    from deepgeo_runner.pipeline.predicting import apply_checkpoint_stage

    onnx_file, image = exported["files"]["onnx"], exported["scene"]["image"]
    cfg = compose("stages=[predict]", f"predict.checkpoint={onnx_file}", f"predict.image={image}",
                  "predict.probabilities=uint8", "predict.entropy=true", f"paths.cache_dir={tmp_path / 'cache'}",
                  f"paths.output_dir={tmp_path / 'run'}")
    validate_config(cfg)
    art = apply_checkpoint_stage(run_options(cfg), tmp_path / "run")
    assert {"prediction.tif", "prediction_proba.tif", "prediction_entropy.tif"} <= {
        p.name for p in (tmp_path / "run").iterdir()}
    with rasterio.open(art.prediction) as src:
        assert src.tags()["class_2"] == "clearing" and (src.read(1)[:8, :8] == 255).all()
    with pytest.raises(ConfigError, match=r"exported model.*stages=\[predict\] predict.image"):
        validate_config(compose("stages=[predict]", f"predict.checkpoint={onnx_file}",
                                f"paths.output_dir={tmp_path / 'run'}"))


def test_preflight_takes_an_onnx_file_for_predict_checkpoint(tmp_path):
    """The command line's preflight checks a .ckpt/.pt2 is a complete zip; an .onnx is a protobuf
    (onnxruntime names a damaged one when it loads), so it is not refused there."""
    from deepgeo_runner.core.errors import InputDataError
    from deepgeo_runner.pipeline.preflight import check_checkpoint_readable

    (tmp_path / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    check_checkpoint_readable(tmp_path / "model.onnx")
    (tmp_path / "model.ckpt").write_bytes(b"\x08\x07")
    with pytest.raises(InputDataError, match="not a complete checkpoint"):
        check_checkpoint_readable(tmp_path / "model.ckpt")
