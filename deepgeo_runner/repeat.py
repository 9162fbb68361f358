"""``deepgeo-repeat RUN_DIR [overrides...]``: run again what a finished run ran, from its directory alone.

The run's ``.hydra/config.yaml`` (the composed config, its interpolations kept) becomes the
primary config, on top of the schema and the package's Hydra settings, and ``deepgeo`` runs it:
a new run directory (``runs/<date>_<time>``, or ``hydra.run.dir=...``) with its own ``.hydra/``
and a ``provenance.json`` that names the run repeated (``repeat_of``). Overrides change what they
name (``trainer.max_epochs=20``). On CPU the repeat's ``metrics.json`` equals the original's byte
for byte when the inputs are the same files (relative paths are read from the current folder).

Why not Hydra's flags: ``deepgeo --config-dir RUN/.hydra`` composes the package's own
``config.yaml``, which comes first in the search path, so it silently runs the defaults; and
``--config-path RUN/.hydra`` drops the schema and the package's Hydra settings. The ``deepgeo``
command refuses both (:func:`~deepgeo_runner.config.command_line.check_config_source`) and names this one instead.

Only light imports here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from deepgeo_runner.config.command_line import run_config_file, run_dir_of
from deepgeo_runner.config.location import config_dir
from deepgeo_runner.config.saved_targets import check_saved_config
from deepgeo_runner.config.schema import CONFIG_SCHEMA_VERSION
from deepgeo_runner.core.cache import file_fingerprint
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.pipeline.provenance import REPEAT_ENV

CONFIG_NAME = "deepgeo_repeat"  # the repeated run's config in Hydra's ConfigStore
ALLOW_CHANGED = "--allow-changed-inputs"  # repeat although an input file's bytes differ from the run's
USAGE = """usage: deepgeo-repeat RUN_DIR [--allow-changed-inputs] [overrides...]

Runs again the deepgeo run saved in RUN_DIR (its .hydra/config.yaml) into a new run directory
(runs/<date>_<time>, or hydra.run.dir=DIR). Overrides change what they name, e.g.
  deepgeo-repeat runs/2026-01-31_12-00-00
  deepgeo-repeat runs/2026-01-31_12-00-00 hydra.run.dir=runs/again trainer.max_epochs=20

An input file whose SHA-256 differs from the one in RUN_DIR/provenance.json stops the repeat
(exit status 2), naming the file and both hashes; --allow-changed-inputs repeats it anyway.
"""


def schema_version_warning(run_dir: Path) -> str | None:
    """A warning when the run recorded another config schema version than the installed one's."""
    provenance = run_dir / "provenance.json"
    try:
        recorded = json.loads(provenance.read_text()).get("config_schema_version")
    except (OSError, ValueError) as exc:
        return f"cannot read the config schema version of {run_dir} ({provenance}: {exc}); repeating as it is."
    if recorded == CONFIG_SCHEMA_VERSION:
        return None
    was = "no config schema version (written before versions were recorded)" if recorded is None else \
        f"config schema version {recorded}"
    return (f"{run_dir} was run with {was}; this deepgeo-runner's is {CONFIG_SCHEMA_VERSION}: keys may have "
            "changed meaning, so the repeat may differ from it (or fail to compose, naming the key).")


def recorded_inputs(record: dict) -> list[tuple[str, str, str]]:
    """(name, path, sha256) of every input file a provenance record lists."""
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    found = [(str(name), str(entry["path"]), str(entry["sha256"])) for name, entry in inputs.items()
             if isinstance(entry, dict) and entry.get("path") and entry.get("sha256")]
    for i, entry in enumerate(inputs.get("image_sources") or []):
        if isinstance(entry, dict) and entry.get("path") and entry.get("sha256"):
            found.append((f"image_sources[{i}]", str(entry["path"]), str(entry["sha256"])))
    return found


def changed_inputs(run_dir: Path) -> list[str]:
    """Each input of the run whose file now holds other bytes, or is gone, with both hashes.

    Repeating on other data gives other metrics; said before the run, not found after it.
    Paths are read as the run recorded them (relative ones from the current folder, as the repeat reads them).
    """
    try:
        record = json.loads((run_dir / "provenance.json").read_text())
    except (OSError, ValueError):
        return []  # nothing recorded to compare with (schema_version_warning already says so)
    changes = []
    for name, path, recorded in recorded_inputs(record if isinstance(record, dict) else {}):
        try:
            now = file_fingerprint(path)
        except OSError as exc:
            now = f"unreadable ({exc.strerror or exc})"
        if now != recorded:
            changes.append(f"{name} '{path}': recorded sha256 {recorded}, now {now}")
    return changes


def check_inputs(run_dir: Path, allow_changed: bool) -> None:
    """Stop (exit 2) when an input changed since the run, unless ``--allow-changed-inputs``; then warn."""
    changes = changed_inputs(run_dir)
    if not changes:
        return
    listing = "\n  ".join(changes)
    if allow_changed:
        print(f"Warning: the inputs of {run_dir} changed since it ran ({ALLOW_CHANGED}), so its metrics will "
              f"differ:\n  {listing}", file=sys.stderr)
        return
    print(f"Error: the inputs of {run_dir} changed since it ran; a repeat on other data is no repeat:\n  {listing}\n"
          f"Restore those files, or repeat anyway with: deepgeo-repeat {run_dir} {ALLOW_CHANGED} [overrides...]",
          file=sys.stderr)
    sys.exit(2)


def upgrade_saved_config(saved: DictConfig) -> DictConfig:
    """A config saved before schema version 1 in today's form: its ``logger`` was one ``_target_``
    node, now a mapping of names (``logger.csv``)."""
    logger = saved.get("logger")
    if isinstance(logger, DictConfig) and "_target_" in logger:
        name = "csv" if str(logger._target_).endswith("CSVLogger") else "logger"
        saved.logger = {name: logger}
    return saved


def register_run_config(config_file: Path, overrides: list[str] | None = None) -> None:
    """Store the run's saved config as :data:`CONFIG_NAME`, composed over the schema and the package's
    Hydra settings (``conf/hydra/default.yaml``) exactly as ``conf/config.yaml`` composes a new run.

    The saved config is data: a ``_target_`` this package does not know is refused unless the user
    names it again in ``overrides`` (:mod:`deepgeo_runner.config.saved_targets`)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf


    try:
        loaded = OmegaConf.load(config_file)
    except Exception as exc:
        raise ConfigError(f"cannot read the saved config '{config_file}': {exc}") from exc
    raw = OmegaConf.to_container(loaded, resolve=False)
    if not isinstance(raw, dict):
        raise ConfigError(f"the saved config '{config_file}' is not a mapping of keys.")
    check_saved_config(raw, f"saved config '{config_file}'", Path(config_dir()), overrides or [])
    saved = upgrade_saved_config(loaded)
    node = OmegaConf.merge({"defaults": ["run_schema", {"hydra": "default"}, "_self_"]}, saved)
    ConfigStore.instance().store(name=CONFIG_NAME, node=node)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: ``deepgeo-repeat RUN_DIR [overrides...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["--config-name", CONFIG_NAME] and os.environ.get(REPEAT_ENV):
        run_dir, overrides = Path(os.environ[REPEAT_ENV]), args[2:]  # started again by Lightning's DDP launcher
    elif not args or args[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    else:
        run_dir, overrides = Path(args[0]), args[1:]
        config_file = run_config_file(run_dir)
        if config_file is None:
            print(f"Error: {run_dir} is not the directory of a deepgeo run: it holds no .hydra/config.yaml "
                  "(with hydra.yaml beside it).\n\n" + USAGE, file=sys.stderr)
            sys.exit(2)
        run_dir = run_dir_of(config_file)
        warning = schema_version_warning(run_dir)
        if warning:
            print(f"Warning: {warning}", file=sys.stderr)
        allow_changed = ALLOW_CHANGED in overrides
        overrides = [o for o in overrides if o != ALLOW_CHANGED]
        check_inputs(run_dir, allow_changed)
    config_file = run_config_file(run_dir)
    if config_file is None:
        print(f"Error: {run_dir} ({REPEAT_ENV}) holds no .hydra/config.yaml.", file=sys.stderr)
        sys.exit(2)
    os.environ[REPEAT_ENV] = str(run_dir.resolve())
    from deepgeo_runner import cli  # registers the schema the run's config composes over

    try:
        register_run_config(config_file, overrides)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], "--config-name", CONFIG_NAME, *overrides]
    cli.main()


if __name__ == "__main__":
    main()
