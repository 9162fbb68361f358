"""The CUDA paths: bf16 autocast prediction, and a whole run with the chip store resident in GPU
memory, channels-last and bf16-mixed training. Skipped (with the reason) without a GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from deepgeo_runner.ml.predict import ClassLegend, WindowSettings, predict_scene
from tests.helpers import deepgeo, write_image
from tests.helpers.models import CLASSES, small_cnn, smooth_image

pytestmark = pytest.mark.gpu


def test_bf16_prediction_on_the_gpu_agrees_with_fp32_on_the_cpu(tmp_path):
    image = write_image(tmp_path / "in.tif", smooth_image((2, 150, 170)))
    cpu = predict_scene(small_cnn(), image, tmp_path / "cpu.tif", WindowSettings(64, 0.5, 8), ClassLegend.of(CLASSES),
                        device="cpu", progress=False)
    gpu = predict_scene(small_cnn(), image, tmp_path / "gpu.tif", WindowSettings(64, 0.5, 8, amp=True),
                        ClassLegend.of(CLASSES), device="cuda", progress=False)
    with rasterio.open(cpu) as a, rasterio.open(gpu) as b:
        assert (a.transform, a.shape) == (b.transform, b.shape)
        agree = (a.read(1) == b.read(1)).mean()
    assert agree > 0.98, agree  # bf16 flips only near-ties


@pytest.mark.slow
def test_a_run_learns_on_the_gpu_with_a_resident_store_channels_last_and_bf16(tmp_path):
    run_dir = tmp_path / "gpu_run"
    deepgeo(run_dir, tmp_path / "cache", "trainer=default", "trainer.devices=1", "trainer.precision=bf16-mixed",
            "train.channels_last=true", "data.device_resident=auto", "predict.amp=true")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["f1_macro"] > 0.6 and metrics["accuracy"] > 0.75, metrics
    devices = json.loads((run_dir / "provenance.json").read_text())["devices"]
    assert devices["cuda_available"] and devices["gpus"]
    with rasterio.open(run_dir / "prediction.tif") as src:
        classes = src.read(1)
    assert set(np.unique(classes)) <= {1, 2, 3, 255} and len(np.unique(classes)) >= 3
