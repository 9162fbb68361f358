"""Checks of the command line's overrides before Hydra composes them.

Hydra reports a misspelt key (``data.chip_sise=32``) as "Key 'chip_sise' is not in struct" and
a path it cannot lex (``data.image=/tmp/çena.tif``) as a lexer error, both without a hint
and with exit status 1. Here each becomes a :class:`~deepgeo_runner.core.errors.ConfigError`
naming the override and the fix (the closest key, the quoted form). Only what is certainly
wrong is refused: a key is unknown only where the schema's dataclasses say so.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.config.validate import did_you_mean
from deepgeo_runner.core.errors import ConfigError

_NO_RUN_FLAGS = ("--help", "-h", "--hydra-help", "--version", "--info", "-i", "--shell-completion", "-sc",
                 "--experimental-rerun")
_OTHER_CONFIG_FLAGS = ("--config-dir", "-cd", "--config-path", "-cp")


def override_args(args: Sequence[str]) -> list[str]:
    """The overrides among Hydra's command-line arguments (its own flags and their values left out)."""
    from hydra._internal.utils import get_args_parser

    known, unknown = get_args_parser().parse_known_args(list(args))
    return list(known.overrides) + [a for a in unknown if not a.startswith("-")]


def check_overrides(args: Sequence[str], config_dir: str | Path) -> None:
    """Refuse an override Hydra cannot lex, or whose key the schema does not have.

    Args:
        args: the command line after the program's name.
        config_dir: the package's conf/ folder, whose subfolders are config groups.

    Raises:
        ConfigError: naming the override and the fix.
    """
    if any(a.split("=")[0] in _NO_RUN_FLAGS for a in args):
        return  # Hydra prints help or a version and runs nothing
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    own_groups = not any(a.split("=")[0] in _OTHER_CONFIG_FLAGS for a in args)
    groups = {p.name for p in Path(config_dir).iterdir() if p.is_dir()} if own_groups else None
    for arg in override_args(args):
        try:
            override = parser.parse_override(arg)
        except Exception as exc:  # noqa: BLE001 - Hydra's HydraException/OverrideParseException
            raise ConfigError(_unparsable(arg, exc)) from exc
        if override.is_add() or override.is_force_add():
            continue  # +key=: checked on the composed config (validate.check_known_keys)
        _check_key(str(override.key_or_group), groups)


def _unparsable(arg: str, exc: Exception) -> str:
    """Hydra's complaint, and the override quoted so that its value is read as one string."""
    key, _, value = arg.partition("=")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not value:
        return f"cannot read the override '{arg}' ({first}): write it as key=value (see deepgeo --help)."
    why = (f"cannot read the override '{arg}' ({first}): Hydra reads an unquoted value as plain words, which "
           "letters outside ASCII, spaces, parentheses and some other signs break.")
    if value.lstrip()[:1] in ("[", "{"):
        return f"{why} Quote each path inside the list, and the whole argument for the shell: '{key}=[\"a.tif\",...]'"
    inner = value.replace("\\", "\\\\").replace('"', '\\"')
    return f"{why} Quote the value, and the whole argument for the shell: '{key}=\"{inner}\"'"


def _check_key(key: str, groups: set[str] | None) -> None:
    """Walk ``key`` down the schema's dataclasses; the first name a dataclass lacks is refused."""
    if "/" in key or key.split(".")[0] == "hydra":
        return  # a group under another group (hydra/launcher=...) or Hydra's own settings
    parts = key.split(".")
    schema: Any = RunConfig
    for depth, name in enumerate(parts):
        fields = _fields(schema)
        if name not in fields:
            if depth == 0 and (groups is None or name in groups):
                return  # a config group that is no key (experiments, debug, launcher...)
            extra = sorted(groups - set(fields)) if depth == 0 and groups else []
            _unknown(parts[:depth], name, list(fields) + extra)
        schema = fields[name]
        if not dataclasses.is_dataclass(schema):
            return  # a free-form node (model, trainer, a mapping): its keys are checked later


def _fields(schema: type) -> dict[str, Any]:
    """Field name → type (``X | None`` unwrapped to ``X``)."""
    hints = typing.get_type_hints(schema)
    out = {}
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[f.name] = args[0] if len(args) == 1 and dataclasses.is_dataclass(args[0]) else hint
    return out


def _unknown(parents: list[str], name: str, choices: list[str]) -> None:
    prefix = "".join(f"{p}." for p in parents)
    group = prefix.rstrip(".") or "the config"
    hint = did_you_mean(name, choices, prefix) or f" The keys of {group} are {sorted(choices)}."
    raise ConfigError(f"{prefix}{name} is not a key of {group}.{hint}")


def run_config_file(folder: Path) -> Path | None:
    """The saved config of the run in ``folder`` (its run directory or its ``.hydra/``), or None."""
    for hydra_dir in (folder / ".hydra", folder):
        if (hydra_dir / "config.yaml").is_file() and (hydra_dir / "hydra.yaml").is_file():
            return hydra_dir / "config.yaml"
    return None


def run_dir_of(config_file: Path) -> Path:
    """The run directory of a saved ``config.yaml`` (the folder above ``.hydra/``)."""
    return config_file.parent.parent if config_file.parent.name == ".hydra" else config_file.parent


def check_config_source(args: list[str]) -> None:
    """Refuse Hydra's ``--config-dir``/``--config-path`` flags where they would not run what they name.

    ``--config-dir DIR`` whose ``config.yaml`` would be the primary config (no other
    ``--config-name``) is shadowed by the package's own ``config.yaml``: the defaults would run.
    ``--config-path`` of a run's ``.hydra/`` composes without the schema and fails obscurely.

    Raises:
        ConfigError: saying what to run instead.
    """
    config_name = _flag(args, "--config-name", "-cn") or "config"
    config_dir = _flag(args, "--config-dir", "-cd")
    config_path = _flag(args, "--config-path", "-cp")
    for flag, folder in (("--config-dir", config_dir), ("--config-path", config_path)):
        if folder is None:
            continue
        run = run_config_file(Path(folder))
        if run is not None and (flag == "--config-path" or config_name == "config"):
            raise ConfigError(
                f"{flag} {folder} holds the saved config of a run ({run}): {_HYDRA_FLAG_FAULT[flag]} "
                f"To repeat that run, use: deepgeo-repeat {run_dir_of(run)} [overrides...]")
    if config_dir is not None and config_name == "config" and (Path(config_dir) / "config.yaml").is_file():
        raise ConfigError(
            f"--config-dir {config_dir} holds a config.yaml, but deepgeo's own config.yaml comes first and would "
            "run instead, silently. Give yours another name and choose it: --config-dir "
            f"{config_dir} --config-name my_config.")


_HYDRA_FLAG_FAULT = {
    "--config-dir": "deepgeo's own config.yaml comes first in the search path, so this would run the defaults, "
                    "not that run.",
    "--config-path": "Hydra would compose it without deepgeo's schema and settings.",
}


def _flag(args: list[str], long: str, short: str) -> str | None:
    """The value of a Hydra command-line flag given as ``--flag VALUE``, ``--flag=VALUE``, ``-f VALUE``."""
    value = None
    for i, arg in enumerate(args):
        for name in (long, short):
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg[len(name) + 1:]
    return value
