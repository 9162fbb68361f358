"""Which ``conf/model`` options export to ONNX, and which networks are refused (with the reason).

Every option of the ``model`` group, shrunk to a tiny width, wrapped in the raw-bands graph and exported
to ONNX in memory. The refusals (an operator without an ONNX mapping, a network with two inputs, a
data=torchgeo checkpoint without bands or statistics) are tested in test_export.py and
test_export_graph.py; this table says what each option does.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from deepgeo_runner.export.graph import RawBandsModel, prepared_net  # noqa: E402
from deepgeo_runner.export.onnx_file import onnx_model_proto  # noqa: E402
from deepgeo_runner.ml.model_card import ModelCard  # noqa: E402
from deepgeo_runner.ml.models.registry import build_from_description  # noqa: E402
from tests.helpers import REPO  # noqa: E402
from tests.helpers.tiny_model import CLASSES  # noqa: E402

pytestmark = pytest.mark.slow

# option -> (overrides that shrink it, the outcome): "exports", or the start of the refusal message
TABLE = {
    "fcn8s": (["model.width=4"], "exports"),
    "fcn16s": (["model.width=4"], "exports"),
    "fcn32s": (["model.width=4"], "exports"),
    "unet": ([], "exports"),
    "smp": (["model.encoder=resnet18"], "exports"),
    "unet_valid": (["model.width=4", "model.depth=2"], "exports"),  # mirrored outward: output = tile
    "early_fusion": (["model.width=4", "model.depth=2"], "exports"),  # dates stacked date-major: one input
    "late_fusion": (["model.width=4", "model.depth=2"], "exports"),
    "temporal_attention": (["model.width=4", "model.depth=2"], "exports"),
    "pixel_forest": ([], r"model PixelForest cannot be exported to ONNX: its trees run in LightGBM"),  # no graph
}
TEMPORAL = ("early_fusion", "late_fusion", "temporal_attention")


def test_the_table_lists_every_model_option():
    assert sorted(TABLE) == sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


@pytest.mark.parametrize("option", list(TABLE))
def test_each_model_option_exports_to_onnx_or_is_refused_with_a_reason(option, compose):
    overrides, outcome = TABLE[option]
    cfg = compose(f"model={option}", *overrides, "data.band_names=[blue,green,red,nir]")
    model = OmegaConf.to_container(cfg.model, resolve=True)
    bands = ["blue", "green", "red", "nir"]
    dates = ["2019", "2020"] if option in TEMPORAL else []
    features = [f"{d}_{b}" for d in dates for b in bands] or bands
    inputs = {"in_channels": 4, "dates": 2} if dates else {"in_channels": 4}
    card = ModelCard.from_dict({
        "features": features, "band_names": bands, "indices": [], "dates": dates, **CLASSES, "chip_size": 32,
        "stats": {"method": "standard", "shift": [0.0] * len(features), "scale": [1.0] * len(features)},
        "model": model, "model_inputs": inputs})
    net = build_from_description(model, inputs, 2, "test", None, drop=("encoder_weights", "torchgeo_weights"))
    graph = RawBandsModel(prepared_net(net), card).eval()
    if outcome == "exports":
        proto = onnx_model_proto(graph, card, 32)
        assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim][1:] == [2, 32, 32]
    else:
        with pytest.raises(Exception, match=outcome):
            onnx_model_proto(graph, card, 32)
