"""Nothing in a file runs: a checkpoint's model description and an old run's saved config are data.

Three payloads a hostile file can carry through Hydra's ``instantiate`` (which Hydra's own blocklist
lets through): create or truncate a file (``builtins.open``), write chosen text into a chosen file
(``numpy.savetxt``), and unpickle a second shipped file with ``torch.load(weights_only=False)`` (full
code execution). Each must be refused, naming the key, with nothing written, on every path that reads
such a file.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.ml.models import FCN8s
from deepgeo_runner.ml.models.registry import KNOWN_MODELS, build_from_description
from deepgeo_runner.stages.apply import apply_checkpoint, build_net, read_checkpoint
from tests.helpers import REPO, run_deepgeo

PACKAGE = REPO / "deepgeo_runner"


class _SecondPickle:
    """What the second shipped file holds: unpickling it creates ``target``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def _payloads(tmp_path: Path) -> dict[str, tuple[dict, Path]]:
    """Name -> (a checkpoint's model node, the file it would write)."""
    created, written, unpickled = tmp_path / "created.txt", tmp_path / "bashrc", tmp_path / "pwned.txt"
    second = tmp_path / "weights.bin"
    torch.save(_SecondPickle(unpickled), second)
    smp = {"_target_": "deepgeo_runner.ml.models.smp_model", "arch": "Unet", "encoder": "resnet18"}
    return {
        # nested: Hydra instantiates it before the network
        "file create": ({**smp, "aux_params": {"_target_": "builtins.open", "file": str(created), "mode": "w"}},
                        created),
        "file write": ({"_target_": "numpy.savetxt", "fname": str(written), "X": [[1.0]], "fmt": "echo pwned"},
                       written),
        "second pickle": ({**smp, "decoder_attention_type": {
            "_target_": "torch.load", "f": str(second), "weights_only": False}}, unpickled),
    }


def _checkpoint(path: Path, model: dict, in_channels: int = 5) -> Path:
    """A checkpoint that loads with weights_only=True, as deepgeo writes it, but with ``model`` inside."""
    torch.manual_seed(0)
    net = FCN8s(in_channels=in_channels, classes=2, width=4)
    meta = {"features": ["blue", "green", "red", "nir", "ndvi"][:in_channels], "band_names": ["blue", "green",
            "red", "nir"], "indices": ["ndvi"], "stats": {}, "class_names": ["forest", "clearing"],
            "class_ids": [1, 2], "class_colors": ["#1b7837", "#d6604d"], "chip_size": 16, "model": model,
            "model_inputs": {"in_channels": in_channels}}
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "deepgeo": meta}, path)
    return path


@pytest.mark.parametrize("kind", ["file create", "file write", "second pickle"])
def test_a_payload_checkpoint_is_refused_naming_the_key_with_nothing_written(tmp_path, tiny_scene, kind):
    model, target = _payloads(tmp_path)[kind]
    ckpt = _checkpoint(tmp_path / "model.ckpt", model)
    weights, meta = read_checkpoint(ckpt)  # it passes the weights_only load: the danger is in what it names
    with pytest.raises(InputDataError, match=r"refused before anything ran") as refused:
        build_net(meta, weights, source=f"checkpoint '{ckpt}'")
    assert "model.ckpt" in str(refused.value)
    with pytest.raises(InputDataError, match=r"refused before anything ran"):  # the Python API
        apply_checkpoint(ckpt, tiny_scene["image"], tmp_path / "applied", progress=False)
    assert not target.exists()
    assert not (tmp_path / "applied").exists()  # refused before the scene was prepared


def test_the_message_names_the_nested_key(tmp_path):
    model, _ = _payloads(tmp_path)["file create"]
    with pytest.raises(InputDataError, match=r"model\.aux_params\._target_"):
        build_from_description(model, {"in_channels": 4}, 2, "checkpoint 'x.ckpt'")
    with pytest.raises(InputDataError, match=r"model._target_ 'numpy.savetxt' is not one of deepgeo's models"):
        build_from_description(_payloads(tmp_path)["file write"][0], {"in_channels": 4}, 2, "checkpoint 'x.ckpt'")
    with pytest.raises(InputDataError, match="model_inputs"):  # no smuggled keyword through the run-time inputs
        build_from_description({"_target_": "deepgeo_runner.ml.models.FCN8s"}, {"in_channels": 4, "width": "x"}, 2,
                               "checkpoint 'x.ckpt'")


def test_every_model_option_of_conf_model_is_known():
    """Checkpoints of every conf/model option rebuild without the user naming anything."""
    for file in sorted((REPO / "conf" / "model").glob("*.yaml")):
        target = yaml.safe_load(file.read_text())["_target_"]
        assert target in KNOWN_MODELS, file


def test_a_users_own_network_loads_only_when_the_users_config_names_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "experiments"))
    from tiny_net import TinyNet

    net = TinyNet(in_channels=5, classes=2, width=4)
    meta = {"features": list("abcde"), "class_names": ["x", "y"], "model": {"_target_": "tiny_net.TinyNet",
            "width": 4}, "model_inputs": {"in_channels": 5}}
    with pytest.raises(InputDataError, match=r"name the same class in your config.*tiny_net.TinyNet"):
        build_net(meta, net.state_dict())
    with pytest.raises(InputDataError, match="not one of deepgeo's models"):  # another class named by the user
        build_net(meta, net.state_dict(), trusted_target="deepgeo_runner.ml.models.smp_model")
    rebuilt = build_net(meta, net.state_dict(), trusted_target="tiny_net.TinyNet")
    x = torch.rand(1, 5, 16, 16)
    net.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), net(x))


def _cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_deepgeo(*args, module=module, cwd=cwd)


def test_predict_on_a_new_scene_from_the_command_line_refuses_a_payload(tmp_path, tiny_scene):
    model, target = _payloads(tmp_path)["second pickle"]
    ckpt = _checkpoint(tmp_path / "model.ckpt", model)
    run = tmp_path / "run"
    proc = _cli("deepgeo_runner.cli", "stages=[predict]", f"predict.checkpoint={ckpt}",
                f"predict.image={tiny_scene['image']}", f"hydra.run.dir={run}",
                f"paths.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    said = proc.stdout + proc.stderr
    assert "decoder_attention_type._target_" in said and "Traceback" not in said
    assert not target.exists()
    assert not (run / "prediction.tif").exists()


def test_test_and_resume_never_build_the_checkpoints_model(tmp_path):
    """stages=[test] predict.checkpoint=... and a resume load only weights into the configured network."""
    from deepgeo_runner.ml.checkpoint import load_checkpoint
    from deepgeo_runner.stages import train

    for kind, (model, target) in _payloads(tmp_path).items():
        state = load_checkpoint(_checkpoint(tmp_path / f"{kind}.ckpt", model))
        net = FCN8s(in_channels=5, classes=2, width=4)
        net.load_state_dict({k[4:]: v for k, v in state["state_dict"].items()})
        assert train.describe_model(state["deepgeo"]["model"])  # described as text, never built
        assert not target.exists(), kind


@pytest.mark.parametrize("kind", ["file create", "file write", "second pickle"])
def test_repeat_refuses_a_saved_config_that_names_a_payload(tmp_path, kind):
    model, target = _payloads(tmp_path)[kind]
    run = tmp_path / "shared_run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text("hydra: {}\n")
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 1, "model": model}))
    proc = _cli("deepgeo_runner.repeat", str(run), f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    said = proc.stdout + proc.stderr
    assert "refused before anything ran" in said and "model." in said
    assert not target.exists() and not (tmp_path / "again").exists()


def test_a_saved_config_may_not_carry_hydra_settings_and_the_users_own_words_allow_a_class(tmp_path):
    from deepgeo_runner.cli import config_dir
    from deepgeo_runner.config.saved_targets import check_saved_config

    conf = Path(config_dir())
    with pytest.raises(ConfigError, match="'hydra' node"):
        check_saved_config({"hydra": {"job": {"env_set": {"LD_PRELOAD": "x.so"}}}}, "saved", conf)
    with pytest.raises(ConfigError, match=r"callbacks.mine._target_=builtins.exec"):
        check_saved_config({"callbacks": {"mine": {"_target_": "builtins.exec"}}}, "saved", conf)
    own = {"model": {"_target_": "my_nets.Net"}}
    with pytest.raises(ConfigError, match=r"deepgeo-repeat RUN_DIR model._target_=my_nets.Net"):
        check_saved_config(own, "saved", conf)
    check_saved_config(own, "saved", conf, ["model._target_=my_nets.Net"])
    with pytest.raises(ConfigError):  # the same class at another key is not the user's word
        check_saved_config({"loss": {"_target_": "my_nets.Net"}}, "saved", conf, ["model._target_=my_nets.Net"])
    # everything the package's own configs name passes
    for name in ("torch.optim.AdamW", "lightning.pytorch.Trainer", "deepgeo_runner.ml.losses.CrossEntropyLoss",
                 "lightning.pytorch.callbacks.LearningRateMonitor", "torchgeo.datamodules.LandCoverAIDataModule"):
        check_saved_config({"x": {"_target_": name}}, "saved", conf)
    for name in ("torch.load", "numpy.savetxt", "builtins.open", "torch.optim.swa_utils.update_bn"):
        with pytest.raises(ConfigError):
            check_saved_config({"x": {"_target_": name}}, "saved", conf)


def test_instantiate_is_called_only_on_the_users_own_config():
    """A search of the package: Hydra's instantiate is imported in one module, and every call of it
    takes a node of the run's options (``opts.``), a node handed down from there, or a datamodule node."""
    importers = []
    for file in PACKAGE.rglob("*.py"):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("hydra.utils", "hydra._internal.utils") and \
                    any(a.name in ("instantiate", "call") for a in node.names):
                importers.append(file.relative_to(PACKAGE).as_posix())
    assert importers == ["pipeline/instantiators.py"]
    calls = []
    for file in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "instantiate":
                calls.append((file.name, ast.unparse(node.args[0])))
    assert calls and all(arg.startswith(("opts.", "node", "data.")) for _, arg in calls), calls


def test_numpy_savetxt_and_open_are_not_known_models():
    assert not {"numpy.savetxt", "builtins.open", "torch.load"} & set(KNOWN_MODELS)
    assert np.all([callable(c) for c in KNOWN_MODELS.values()])
