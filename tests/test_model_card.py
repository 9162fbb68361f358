"""The model card: one typed, versioned value written into every checkpoint and read by every reader."""

from __future__ import annotations

import pytest
import torch

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.ml.checkpoint import load_checkpoint, plain_metadata
from deepgeo_runner.ml.model_card import CARD_VERSION, ModelCard
from deepgeo_runner.stages.apply import apply_checkpoint, read_checkpoint
from tests.helpers.tiny_model import make_checkpoint


def test_old_flat_metadata_becomes_a_card_and_back_unchanged(tmp_path, tiny_scene):
    _, made = make_checkpoint(tmp_path, tiny_scene, flat=True, labelling={"class_column": "class"},
                              input_profile={"bands": 4, "dtype": "float32"}, scale=0.0001, keep_bands=["red", "nir"],
                              surprise={"kept": True})
    flat = plain_metadata(made["meta"])
    card = ModelCard.from_dict(flat)
    assert card.class_names == ["forest", "clearing"] and card.class_ids == [1, 2]
    assert card.features == ("blue", "green", "red", "nir", "ndvi") and card.normalization["method"] == "standard"
    assert card.extra == {"surprise": {"kept": True}}  # a key this version does not know is kept, not dropped
    assert card.inference_meta() == flat
    again = ModelCard.from_dict(card.to_dict())
    assert again == card and again.inference_meta() == flat
    assert ModelCard.from_json(card.to_json()) == card


def test_every_checkpoint_holds_the_versioned_card_and_old_ones_still_load(tmp_path, tiny_scene):
    from deepgeo_runner.lit.module import SegmentationModule
    from deepgeo_runner.ml.models import FCN8s

    _, made = make_checkpoint(tmp_path / "a", tiny_scene)
    module = SegmentationModule(FCN8s(5, 2, width=4), torch.optim.SGD, None, ["forest", "clearing"],
                                inference_meta=made["meta"])
    state: dict = {}
    module.on_save_checkpoint(state)
    assert state["deepgeo"]["schema_version"] == CARD_VERSION
    assert state["deepgeo"]["inputs"]["features"] == ["blue", "green", "red", "nir", "ndvi"]
    assert ModelCard.from_dict(state["deepgeo"]).inference_meta()["stats"] == made["meta"]["stats"]

    new_ckpt, _ = make_checkpoint(tmp_path / "new", tiny_scene)
    old_ckpt, _ = make_checkpoint(tmp_path / "old", tiny_scene, flat=True)
    assert "schema_version" in load_checkpoint(new_ckpt)["deepgeo"]
    assert "schema_version" not in load_checkpoint(old_ckpt)["deepgeo"]
    w_new, m_new = read_checkpoint(new_ckpt)
    w_old, m_old = read_checkpoint(old_ckpt)
    assert m_new == m_old and all(torch.equal(w_new[k], w_old[k]) for k in w_new)
    a = apply_checkpoint(new_ckpt, tiny_scene["image"], tmp_path / "applied_new", batch_size=4, progress=False)
    b = apply_checkpoint(old_ckpt, tiny_scene["image"], tmp_path / "applied_old", batch_size=4, progress=False)
    import rasterio

    with rasterio.open(a.prediction) as x, rasterio.open(b.prediction) as y:
        assert (x.read() == y.read()).all()


def test_a_card_of_a_newer_version_or_the_wrong_shape_is_refused_naming_the_file(tmp_path, tiny_scene):
    ckpt, _ = make_checkpoint(tmp_path, tiny_scene)
    state = load_checkpoint(ckpt)
    state["deepgeo"]["schema_version"] = CARD_VERSION + 1
    torch.save(state, tmp_path / "newer.ckpt")
    with pytest.raises(InputDataError, match=r"newer.ckpt.*version 2.*update deepgeo-runner"):
        read_checkpoint(tmp_path / "newer.ckpt")
    state["deepgeo"] = {"schema_version": 1, "classes": "forest"}
    torch.save(state, tmp_path / "bad.ckpt")
    with pytest.raises(InputDataError, match=r"bad.ckpt.*'classes' is not a list"):
        read_checkpoint(tmp_path / "bad.ckpt")
