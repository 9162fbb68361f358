"""Rebuilding a network from a model description that came from a file: data, never code.

A checkpoint (or an old run's record) names its network as ``{"_target_": NAME, key: value...}``.
Handing that node to ``hydra.utils.instantiate`` would call whatever it names, nested ``_target_``
nodes first: ``builtins.open``, ``numpy.savetxt`` or ``torch.load(weights_only=False)`` on a
second file would all run before the network was even built. Here the name is looked up in a
fixed table of this package's constructors (:data:`KNOWN_MODELS`); the values must be plain
(numbers, strings, lists, mappings without ``_target_``); nothing is imported from a name a file
chose. A user's own network class is built only when the user's own config names the same class
(``trusted_target``): the file alone never decides what code runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.ml.models.fcn import FCN8s, FCN16s, FCN32s
from deepgeo_runner.ml.models.pixel_forest import PixelForest
from deepgeo_runner.ml.models.smp_models import smp_model
from deepgeo_runner.ml.models.temporal import EarlyFusionUNet, LateFusionUNet, TemporalAttentionUNet
from deepgeo_runner.ml.models.unet import UNetValid

_CONSTRUCTORS: tuple[Callable[..., nn.Module], ...] = (
    FCN8s, FCN16s, FCN32s, smp_model, UNetValid, EarlyFusionUNet, LateFusionUNet, TemporalAttentionUNet,
    PixelForest)


def _names(constructor: Callable[..., nn.Module]) -> tuple[str, str]:
    """The two spellings a config uses: the package's public path and the defining module's."""
    return (f"deepgeo_runner.ml.models.{constructor.__name__}",
            f"{constructor.__module__}.{constructor.__qualname__}")


# Every ``_target_`` of conf/model (and of older checkpoints) -> its constructor.
KNOWN_MODELS: dict[str, Callable[..., nn.Module]] = {
    name: constructor for constructor in _CONSTRUCTORS for name in _names(constructor)}

# The inputs filled in at run time and recorded beside the model node (``model_inputs``).
_INPUT_KEYS = ("in_channels", "dates")
_PLAIN_SCALARS = (str, int, float, bool, type(None))


def check_plain(value: Any, where: str) -> None:
    """Refuse anything in a model description that is not plain data, naming the key.

    Raises:
        InputDataError: at a nested ``_target_`` (or another Hydra key such as ``_partial_``,
            ``_args_``), or at a value that is not a number, string, list or mapping.
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputDataError(f"{where} holds a key of type {type(key).__name__}; keys must be text.")
            if key.startswith("_") and key.endswith("_"):
                raise InputDataError(
                    f"{where}.{key}: a model description read from a file may not name code to call "
                    f"(Hydra's '{key}' inside the model's values); it was refused before anything ran.")
            check_plain(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN_SCALARS):
        raise InputDataError(f"{where} holds a {type(value).__name__}; a model description holds only numbers, "
                             "text, lists and mappings.")


def _import_user_class(target: str) -> Callable[..., nn.Module]:
    """The class (or function) the user's own config names, imported as Hydra would."""
    module_name, _, attribute = target.rpartition(".")
    if not module_name:
        raise InputDataError(f"model._target_ '{target}' is not a dotted path (module.Class).")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise InputDataError(
            f"model._target_ '{target}' of your config cannot be imported ({type(exc).__name__}: {exc}); put its "
            "folder on PYTHONPATH (e.g. PYTHONPATH=experiments for experiments/tiny_net.py).") from exc


def resolve_constructor(target: Any, source: str, trusted_target: str | None = None) -> Callable[..., nn.Module]:
    """The constructor a file's model description names: one of :data:`KNOWN_MODELS`, or the user's
    own class when ``trusted_target`` (the user's config's ``model._target_``) names the same.

    Raises:
        InputDataError: naming ``source`` and the target, with what would let it load.
    """
    if not isinstance(target, str) or not target:
        raise InputDataError(f"{source}: model._target_ must be the name of a model, got {target!r}.")
    if target in KNOWN_MODELS:
        return KNOWN_MODELS[target]
    if trusted_target is not None and target == str(trusted_target):
        return _import_user_class(target)
    raise InputDataError(
        f"{source}: model._target_ '{target}' is not one of deepgeo's models and was refused before anything ran "
        "(a model file names data, never code). If it is your own network class, name the same class in your "
        f"config (model._target_={target}, or the experiment that defines it) and it will be built from your "
        f"config; deepgeo's models are {', '.join(sorted({c.__name__ for c in _CONSTRUCTORS}))}.")


def build_from_description(
    model: Any, inputs: Any, classes: int, source: str, trusted_target: str | None = None,
    drop: tuple[str, ...] = (),
) -> nn.Module:
    """The network a file describes (``model``: its model node; ``inputs``: its ``model_inputs``),
    built by a direct call of a known constructor with the file's plain values.

    ``drop`` lists keys reset to None (e.g. pretrained-weight names: the file's weights replace them).

    Raises:
        InputDataError: for any non-plain value or unknown target, before anything is called.
    """
    if not isinstance(model, Mapping):
        raise InputDataError(f"{source}: the model description is a {type(model).__name__}, not a mapping.")
    kwargs = {k: v for k, v in model.items() if k != "_target_"}
    check_plain(kwargs, f"{source}: model")
    if not isinstance(inputs, Mapping) or set(inputs) - set(_INPUT_KEYS) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in inputs.values()):
        raise InputDataError(f"{source}: model_inputs must map {' / '.join(_INPUT_KEYS)} to positive whole "
                             f"numbers, got {inputs!r}.")
    constructor = resolve_constructor(model.get("_target_"), source, trusted_target)
    kwargs.update({k: None for k in drop if k in kwargs})
    return constructor(**kwargs, **inputs, classes=int(classes))
