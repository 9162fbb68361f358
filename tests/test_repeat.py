"""Repeating a run from its directory alone (``deepgeo-repeat``), the ``--config-dir`` trap refused,
and the versions a run records: the config schema's, and the code's even when installed from a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from deepgeo_runner.config.command_line import check_config_source
from deepgeo_runner.config.schema import CONFIG_SCHEMA_VERSION
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.pipeline.provenance import code_version, git_commit, source_digest
from deepgeo_runner.repeat import schema_version_warning, upgrade_saved_config
from tests.helpers import REPO

FAST = ["debug=fast", "stages=[prepare,rasterize,chips,fit,test]"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env=_env())


def _fake_run(folder: Path) -> Path:
    """A run directory as Hydra leaves it (.hydra/config.yaml beside hydra.yaml), nothing run."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (folder / ".hydra" / "hydra.yaml").write_text("hydra: {}\n")
    return folder


@pytest.mark.slow
def test_a_repeated_run_writes_an_identical_metrics_json(tmp_path):
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    first, again = tmp_path / "first", tmp_path / "again"
    proc = _run("deepgeo_runner.cli", *FAST, f"hydra.run.dir={first}", cache, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _run("deepgeo_runner.repeat", str(first), f"hydra.run.dir={again}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr  # same schema version
    assert (again / "metrics.json").read_bytes() == (first / "metrics.json").read_bytes()
    assert OmegaConf.load(again / ".hydra" / "config.yaml") == OmegaConf.load(first / ".hydra" / "config.yaml")
    provenance = json.loads((again / "provenance.json").read_text())
    assert provenance["repeat_of"] == str(first.resolve())
    assert provenance["config_schema_version"] == CONFIG_SCHEMA_VERSION
    assert provenance["code_version"]["source_sha256"] == source_digest()
    assert (again / "deepgeo.log").is_file()  # the package's Hydra settings applied (job name deepgeo)


@pytest.mark.parametrize("flags", [["--config-dir", "{run}/.hydra"], ["-cd={run}/.hydra", "--config-name", "config"],
                                   ["--config-path", "{run}/.hydra", "--config-name", "config"], ["-cp", "{run}"]])
def test_hydra_flags_pointing_at_a_run_fail_and_name_deepgeo_repeat(flags, tmp_path):
    run = _fake_run(tmp_path / "run")
    args = [f.format(run=run) for f in flags]
    with pytest.raises(ConfigError, match=rf"holds the saved config of a run.*deepgeo-repeat {run} \[overrides"):
        check_config_source(args)


def test_the_config_dir_trap_fails_through_the_command_before_anything_runs(tmp_path):
    run = _fake_run(tmp_path / "run")
    proc = _run("deepgeo_runner.cli", "--config-dir", str(run / ".hydra"), f"hydra.run.dir={tmp_path / 'new'}",
                cwd=tmp_path)
    assert proc.returncode == 2
    assert f"would run the defaults, not that run. To repeat that run, use: deepgeo-repeat {run}" in proc.stderr
    assert not (tmp_path / "new").exists()


def test_config_dir_is_fine_with_another_config_name_and_refused_for_a_shadowed_config_yaml(tmp_path):
    run = _fake_run(tmp_path / "run")
    check_config_source(["--config-dir", str(run / ".hydra"), "--config-name", "mine"])
    check_config_source(["--config-dir", str(tmp_path / "empty")])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("seed: 3\n")
    with pytest.raises(ConfigError, match=r"deepgeo's own config\.yaml comes first.*--config-name my_config"):
        check_config_source(["--config-dir", str(mine)])


def test_repeat_refuses_a_folder_that_is_not_a_run(tmp_path):
    proc = _run("deepgeo_runner.repeat", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "is not the directory of a deepgeo run" in proc.stderr
    assert "usage: deepgeo-repeat RUN_DIR" in proc.stderr


def test_repeat_warns_when_the_run_has_another_schema_version(tmp_path):
    (tmp_path / "provenance.json").write_text(json.dumps({"config_schema_version": CONFIG_SCHEMA_VERSION}))
    assert schema_version_warning(tmp_path) is None
    (tmp_path / "provenance.json").write_text(json.dumps({"config_schema_version": CONFIG_SCHEMA_VERSION + 1}))
    assert f"config schema version {CONFIG_SCHEMA_VERSION + 1}; this deepgeo-runner's is" in \
        schema_version_warning(tmp_path)
    (tmp_path / "provenance.json").write_text("{}")
    assert "no config schema version" in schema_version_warning(tmp_path)


def test_a_config_saved_before_version_1_gets_its_single_logger_a_name():
    saved = OmegaConf.create({"logger": {"_target_": "deepgeo_runner.lit.logs.HistoryCSVLogger", "name": "logs"}})
    assert OmegaConf.to_container(upgrade_saved_config(saved).logger) == {
        "csv": {"_target_": "deepgeo_runner.lit.logs.HistoryCSVLogger", "name": "logs"}}


def test_git_commit_only_for_a_package_at_the_top_of_a_checkout(tmp_path):
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    for package in (tmp_path / "pkg", tmp_path / "venv" / "site-packages" / "pkg"):
        package.mkdir(parents=True)
        (package / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    assert len(git_commit(tmp_path / "pkg")) == 40
    assert git_commit(tmp_path / "venv" / "site-packages" / "pkg") is None  # a wheel in a venv in a repository


def test_a_wheel_install_records_the_package_version_and_the_source_digest_without_a_commit(tmp_path):
    """Built from this tree (hatchling, as pip builds it), unpacked as pip installs it, and asked
    what code it is: the version of pyproject, no commit, and the digest of this tree's sources."""
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(wheels)],
                           capture_output=True, text=True, timeout=300)
    if build.returncode != 0:
        pytest.skip(f"cannot build the wheel here (pip wheel needs hatchling from a package index): "
                    f"{build.stderr.strip()[-300:]}")
    (wheel,) = wheels.glob("deepgeo_runner-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import json, deepgeo_runner.pipeline.provenance as p; "
             "print(json.dumps({'file': p.__file__, **p.code_version()}))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    installed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert installed.pop("file").startswith(str(site))
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert installed == {"package": version, "git_commit": None, "source_sha256": source_digest()}
    assert code_version()["source_sha256"] == source_digest()


def test_a_repeat_on_changed_inputs_stops_naming_the_file_and_both_hashes(tmp_path):
    import hashlib

    run = _fake_run(tmp_path / "run")
    image = tmp_path / "scene.tif"
    image.write_bytes(b"the bytes the run read")
    recorded = hashlib.sha256(image.read_bytes()).hexdigest()
    (run / "provenance.json").write_text(json.dumps({
        "config_schema_version": CONFIG_SCHEMA_VERSION,
        "inputs": {"image": {"path": str(image), "sha256": recorded}}}))
    image.write_bytes(b"other bytes, edited since")
    now = hashlib.sha256(image.read_bytes()).hexdigest()
    proc = _run("deepgeo_runner.repeat", str(run), f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"image '{image}'" in proc.stderr and recorded in proc.stderr and now in proc.stderr
    assert "--allow-changed-inputs" in proc.stderr and not (tmp_path / "again").exists()

    from deepgeo_runner.repeat import changed_inputs

    image.write_bytes(b"the bytes the run read")  # restored: nothing to say
    assert changed_inputs(run) == []
