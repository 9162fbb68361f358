"""The GPU-facing options on the CPU: data.device_resident (its decision with fake device numbers, its
CPU behaviour, the deprecated data.resident), trainer.precision refusals, and channels-last, bf16-mixed
and torch.compile through the module and a Trainer (a tiny net, a few steps)."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from deepgeo_runner.config.validate import check_precision, validate_config
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.lit.datamodule import AugmentPlan, ChipDataModule, resident_decision
from deepgeo_runner.lit.module import SegmentationModule
from deepgeo_runner.ml.datasets import BatchReader
from deepgeo_runner.pipeline.stage_options import device_resident
from tests.helpers import scene_overrides

GiB = 2**30


def test_auto_is_on_when_the_store_fits_half_the_free_device_memory():
    assert resident_decision("auto", "cuda", 10 * GiB, free_bytes=30 * GiB)[0]
    on, why = resident_decision("auto", "cuda", 20 * GiB, free_bytes=30 * GiB)
    assert not on and "20480 MiB > 50% of 30720 MiB free on cuda" in why
    assert resident_decision("auto", "cuda", 20 * GiB, free_bytes=30 * GiB, share=0.8)[0]
    assert not resident_decision("auto", "cuda", 1, free_bytes=None)[0]  # unknown free memory: off


def test_auto_is_off_on_the_cpu_and_true_false_are_kept():
    assert resident_decision("auto", "cpu", 1, free_bytes=100 * GiB) == (
        False, "data.device_resident=auto: off on the CPU (batches are read from the memory-mapped store)")
    assert resident_decision(True, "cpu", 100 * GiB, free_bytes=0)[0] is True
    assert resident_decision(False, "cuda", 1, free_bytes=100 * GiB)[0] is False
    with pytest.raises(ValueError, match="auto, true or false"):
        resident_decision("maybe", "cuda", 1, 1)


def _store(path, n=12, bands=3, chip=16, classes=3):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        images = rng.standard_normal((n, bands, chip, chip)).astype(np.float32)
        np.save(path / f"{split}_image.npy", images)  # the class follows the first two bands: learnable
        np.save(path / f"{split}_mask.npy", ((images[:, 0] > 0).astype(np.uint8) + (images[:, 1] > 0)) % classes)
    return path


def _tiny_net(bands=3, classes=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(bands, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, classes, 1))


def _module(net, compile_net=False, adam=False):
    def optimizer(params):
        return torch.optim.Adam(params, lr=0.02) if adam else torch.optim.SGD(params, lr=0.05)

    return SegmentationModule(net, optimizer, None, ["a", "b", "c"],
                              compile_net=compile_net)


def _trainer(steps, **kw):
    return pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      use_distributed_sampler=False, **kw)


def test_auto_on_the_cpu_reads_from_the_store_as_before(tmp_path, one_thread):
    dm = ChipDataModule(_store(tmp_path), batch_size=4, augmentation=AugmentPlan("d4"), resident="auto")
    _trainer(2).fit(_module(_tiny_net()), datamodule=dm)
    assert dm.resident is False and "off on the CPU" in dm.resident_reason
    assert isinstance(dm.train_dataloader().dataset, BatchReader)  # the memory-mapped batch path, unchanged
    assert dm.store_bytes() == sum(p.stat().st_size for p in tmp_path.glob("*.npy"))


def test_device_resident_config_and_the_deprecated_resident(compose, tiny_scene):
    cfg = compose(*_scene(tiny_scene))
    assert cfg.data.device_resident == "auto" and device_resident(cfg.data) == "auto"
    cfg = compose(*_scene(tiny_scene), "data.device_resident=false")
    assert device_resident(cfg.data) is False
    cfg = compose(*_scene(tiny_scene), "data.resident=true")
    with pytest.warns(FutureWarning, match="data.resident=true is deprecated: it is data.device_resident"):
        validate_config(cfg)
    assert device_resident(cfg.data) is True
    cfg = compose(*_scene(tiny_scene), "data.device_resident=sometimes")
    with pytest.raises(ConfigError, match="data.device_resident"):
        validate_config(cfg)


def test_precision_values_lightning_refuses_or_swaps_on_the_cpu_are_refused_naming_the_key(compose, tiny_scene):
    cfg = compose(*_scene(tiny_scene), "trainer.precision=fp16")
    with pytest.raises(ConfigError, match="trainer.precision"):
        validate_config(cfg)
    cfg = compose(*_scene(tiny_scene), "trainer=cpu", "trainer.precision=16-mixed")
    with pytest.raises(ConfigError, match=r"trainer.precision=16-mixed .* does not run on the CPU.*bf16-mixed"):
        validate_config(cfg)
    validate_config(compose(*_scene(tiny_scene), "trainer=cpu", "trainer.precision=bf16-mixed"))
    check_precision("16-mixed", "auto", gpu_available=True)  # a GPU will run it
    with pytest.raises(ConfigError, match="no GPU found"):
        check_precision("16-mixed", "auto", gpu_available=False)  # what the fit says on a CPU-only machine


def _scene(tiny_scene):
    return ["data=scene", *scene_overrides(tiny_scene), "paths.output_dir=/tmp/x"]


def _logits(module, x):
    module.eval()
    with torch.no_grad():
        return module(x)


def test_channels_last_gives_the_eager_outputs_and_trains(tmp_path, one_thread):
    x = torch.randn(4, 3, 16, 16)
    eager = _module(_tiny_net())
    last = _module(_tiny_net().to(memory_format=torch.channels_last))
    torch.testing.assert_close(_logits(last, x.contiguous(memory_format=torch.channels_last)), _logits(eager, x),
                               rtol=1e-5, atol=1e-5)
    dm = ChipDataModule(_store(tmp_path), batch_size=4, augmentation=AugmentPlan("d4"))
    _trainer(3).fit(last, datamodule=dm)
    assert last.net[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_gives_the_eager_outputs_through_the_module(tmp_path, one_thread):
    # aot_eager: dynamo's graph capture and autograd tracing as inductor gets them, without generating C++
    # (inductor's code generation takes minutes on a busy 2-core machine; the GPU check covers it)
    x = torch.randn(4, 3, 16, 16)
    compiled, eager = _module(_tiny_net(), compile_net="aot_eager"), _module(_tiny_net())
    torch.testing.assert_close(_logits(compiled, x), _logits(eager, x), rtol=1e-5, atol=1e-5)
    dm = ChipDataModule(_store(tmp_path), batch_size=4, augmentation=AugmentPlan("none"))
    _trainer(3).fit(compiled, datamodule=dm)
    assert compiled.net[0].weight.grad is not None  # the weights live in net and were trained through compile
    assert "_orig_mod" not in "".join(compiled.state_dict())  # checkpoints hold the plain net's weights


def test_a_model_that_does_not_compile_is_named_with_the_option(one_thread):
    def fails(gm, example_inputs):
        raise RuntimeError("backend cannot lower this graph")

    module = _module(_tiny_net(), compile_net=False)
    object.__setattr__(module, "_forward_net", torch.compile(module.net, backend=fails))
    module._compile_checked = False
    with pytest.raises(ConfigError, match=r"train.compile=true: torch.compile cannot compile the model "
                                          r"torch.nn.modules.container.Sequential .*set train.compile=false"):
        module(torch.randn(2, 3, 8, 8))


def test_a_network_that_fails_by_itself_keeps_its_own_error(one_thread):
    module = _module(_tiny_net(), compile_net="aot_eager")
    with pytest.raises(RuntimeError) as err:
        module(torch.randn(2, 5, 8, 8))  # wrong band count: the network's own error, not compile's
    assert not isinstance(err.value, ConfigError)


def test_bf16_mixed_trains_on_the_cpu(tmp_path, one_thread):
    dm = ChipDataModule(_store(tmp_path, n=16), batch_size=8, augmentation=AugmentPlan("none"))
    module = _module(_tiny_net(), adam=True)
    x = torch.from_numpy(np.load(tmp_path / "train_image.npy"))
    y = torch.from_numpy(np.load(tmp_path / "train_mask.npy")).long()

    def loss():
        module.eval()
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(module(x), y))

    before = loss()
    _trainer(30, precision="bf16-mixed").fit(module, datamodule=dm)
    after = loss()
    assert after < 0.9 * before, (before, after)
