"""Comparing runs end to end: a 2-job multirun leaves its summary, an Optuna search names its
winning folder and resumes its stored study, and the pages render in a real headless browser."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow

FAST = ["debug=fast", "trainer=cpu"]


def deepgeo_multirun(*overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "deepgeo_runner.cli", "-m", *FAST, *overrides],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"deepgeo -m failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory) -> Path:
    """``deepgeo -m debug=fast seed=1,2``: two whole cycles in one sweep directory."""
    root = tmp_path_factory.mktemp("compare")
    deepgeo_multirun("seed=1,2", f"hydra.sweep.dir={root / 'sweep'}", f"paths.cache_dir={root / 'cache'}")
    return root / "sweep"


def test_a_two_job_multirun_writes_the_summary_with_both_rows(seed_sweep):
    rows = list(csv.DictReader((seed_sweep / "summary.csv").open()))
    runs = [r for r in rows if r["row"] == "run"]
    assert [(r["run"], r["seed"], r["status"]) for r in runs] == [("0", "1", "completed"), ("1", "2", "completed")]
    for r in runs:
        assert 0 <= float(r["f1_macro"]) <= 1 and 0 <= float(r["best_score"]) <= 1 and float(r["wall_s"]) > 0
        assert r["report"] == f"{r['run']}/report.html" and (seed_sweep / r["report"]).is_file()
        assert f"seed={r['seed']}" in r["overrides"]
    means = [r for r in rows if r["row"] == "mean"]  # the two seeds are one setting: mean and interval
    assert len(means) == 1 and means[0]["runs"] == "2" and "seed" not in means[0]["overrides"]
    page = (seed_sweep / "summary.html").read_text()
    assert "href='0/report.html'" in page and "href='1/report.html'" in page
    assert page.count("src='data:image/png;base64,") == 6  # confusion matrix, curves, prediction of each run
    report = (seed_sweep / "0" / "report.html").read_text()
    identity = report[:report.index("Run directory")]  # the report starts with the run's identity
    for expected in ("seed=1", "demo scene (256 px)", "smp_model", "completed", "code version"):
        assert expected in identity, expected


def _browser() -> tuple[str, str]:
    """The Chromium binary and its driver, or a skip naming what is missing."""
    browser = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                    if p and Path(p).is_file()), None)
    driver = next((p for p in ("/usr/bin/chromedriver", shutil.which("chromedriver")) if p and Path(p).is_file()),
                  None)
    if browser is None or driver is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver; .ci/run does it when it can)")
    return browser, driver


@pytest.fixture(scope="module")
def chromium():
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)  # an explicit driver: nothing downloaded
    yield session
    session.quit()


def _open(chromium, page: Path) -> None:
    """Load ``page``; fail on console errors or an image that did not render; screenshot next to the page."""
    chromium.get(page.resolve().as_uri())
    assert chromium.execute_script("return document.readyState") == "complete"
    severe = [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, f"{page.name}: console errors {severe}"
    images = chromium.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    assert images, f"{page.name} shows no image"
    assert all(ok for _, ok in images), f"{page.name}: images not rendered: {[a for a, ok in images if not ok]}"
    shot = page.with_suffix(".png")
    assert chromium.save_screenshot(str(shot)) and shot.stat().st_size > 0


def test_the_summary_and_a_report_render_in_a_headless_browser(seed_sweep, chromium):
    from selenium.webdriver.common.by import By

    _open(chromium, seed_sweep / "summary.html")
    seed_head = next(th for th in chromium.find_elements(By.CSS_SELECTOR, "#runs th") if th.text == "seed")

    def folders() -> list[str]:
        return [row.find_element(By.CSS_SELECTOR, "td").text
                for row in chromium.find_elements(By.CSS_SELECTOR, "#runs tbody tr")]

    seed_head.click()
    assert folders() == ["0", "1"]  # seeds 1, 2 ascending
    seed_head.click()
    assert folders() == ["1", "0"]  # then descending
    _open(chromium, seed_sweep / "0" / "report.html")


def _summary(sweep: Path) -> dict:
    return json.loads((sweep / "summary.json").read_text())


def test_an_optuna_search_names_its_winner_and_a_relaunch_resumes_its_study(tmp_path):
    sweep = tmp_path / "search"
    common = ["hparams_search=optuna", f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}",
              "stages=[prepare,rasterize,chips,fit,test]"]
    deepgeo_multirun(*common, "hydra.sweeper.n_trials=2")
    first = _summary(sweep)
    assert (sweep / "optuna.db").is_file() and first["search"]["n_trials"] == 2
    best = max(first["runs"], key=lambda r: r["best_score"])
    assert first["search"]["folder"] == best["run"] and best["best_trial"] is True
    assert first["search"]["best_value"] == pytest.approx(best["best_score"], abs=1e-6)
    metrics_0 = (sweep / "0" / "metrics.json").read_bytes()

    proc = deepgeo_multirun(*common, "hydra.sweeper.n_trials=1")  # the same sweep dir: the study goes on
    assert "2 trials stored" in proc.stdout + proc.stderr
    second = _summary(sweep)
    assert second["search"]["n_trials"] == 3 and [r["run"] for r in second["runs"]] == ["0", "1", "2"]
    assert (sweep / "0" / "metrics.json").read_bytes() == metrics_0  # the new trial took a folder of its own
    best = max(second["runs"], key=lambda r: r["best_score"])
    assert second["search"]["folder"] == best["run"]
    assert f"came from folder <b>{best['run']}</b>" in (sweep / "summary.html").read_text()


def test_a_job_that_fails_on_its_config_is_listed_with_its_error(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "deepgeo_runner.cli", "-m", *FAST, "stages=[prepare]",
                           "data.chip_size=32,-1", f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'c'}"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2  # the config error ends the sweep ...
    runs = _summary(sweep)["runs"]  # ... and the summary is still written, with both jobs
    assert [(r["run"], r["status"]) for r in runs] == [("0", "completed"), ("1", "failed before start")]
    assert "data.chip_size=-1" in runs[1]["error"]
