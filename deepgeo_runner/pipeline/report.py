"""Stage ``report``: PNGs of the scene, the ground truth, the prediction and the scores,
plus a one-page report.html that links them with the metrics."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.enums import Resampling

from deepgeo_runner.compare.runs import read_run
from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.history import HISTORY_FILE, history_curves, read_history
from deepgeo_runner.geo.raster_io import valid_mask
from deepgeo_runner.geo.rasterize import NODATA
from deepgeo_runner.report import plots
from deepgeo_runner.report.assessment_plots import plot_assessment_area
from deepgeo_runner.report.error_map import error_codes
from deepgeo_runner.report.headline import UNMEASURED, area_difference
from deepgeo_runner.stages.chips import split_class_counts
from deepgeo_runner.stages.data_check import coverage_line

if TYPE_CHECKING:
    from deepgeo_runner.core.classes import ClassTable
    from deepgeo_runner.pipeline.artifacts import Artifacts
    from deepgeo_runner.pipeline.run_state import RunState

log = logging.getLogger(__name__)

MAX_SIDE = 1024  # plots read rasters decimated to at most this many pixels per side


def _read_small(path: Path, resampling: Resampling,
                indexes: Sequence[int] | None = None) -> tuple[np.ndarray, float | None]:
    """The raster (or its 0-based bands ``indexes``) decimated to at most MAX_SIDE px a side."""
    with rasterio.open(path) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / MAX_SIDE)))
        bands = [i + 1 for i in indexes] if indexes is not None else list(range(1, src.count + 1))
        shape = (len(bands), src.height // factor or 1, src.width // factor or 1)
        return src.read(bands, out_shape=shape, resampling=resampling), src.nodata


def _composite_bands(band_names: Sequence[str], n_bands: int) -> list[int]:
    """Natural colour when red/green/blue are named, else the first three bands."""
    if all(r in band_names for r in ("red", "green", "blue")):
        return [list(band_names).index(r) for r in ("red", "green", "blue")]
    return [min(i, n_bands - 1) for i in range(3)]


def write_report(run_dir: Path, art: Artifacts, classes: ClassTable, band_names: Sequence[str]) -> Path:
    """Write ``plots/*.png`` and ``report.html`` from whatever the run produced."""
    plot_dir = run_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    written: list[Path] = []
    image, bands, nodata = None, None, None
    if art.image is not None:
        image, nodata = _read_small(art.image, Resampling.nearest)
        bands = _composite_bands(list(art.band_names or band_names), image.shape[0])
        written.append(plots.plot_composite(
            image[bands].astype(np.float32), plot_dir / "composite.png",
            title="Colour composite (R, G, B)", valid=valid_mask(image, nodata)))
    if art.chips is not None and art.image is not None and (art.chips.path / "chips.json").exists():
        written += _chip_plots(art, classes, plot_dir, image, bands, nodata)
    first_id = classes.ids[0]
    interest = classes.names[1:] if classes.background_is_class else classes.names
    interest_colors = classes.colors[1:] if classes.background_is_class else classes.colors
    if art.labels is not None:
        labels, _ = _read_small(art.labels, Resampling.nearest)
        written.append(plots.plot_class_map(
            labels[0], plot_dir / "ground_truth.png", interest, interest_colors,
            title="Ground truth (rasterized)", ignore_value=NODATA, first_id=1))
        if art.prepared is not None:
            written.append(_feature_histograms(art, labels[0], interest, interest_colors, plot_dir))
    if art.prediction is not None:
        pred, _ = _read_small(art.prediction, Resampling.mode)
        written.append(plots.plot_class_map(
            pred[0], plot_dir / "prediction.png", classes.names, classes.colors,
            title="Prediction (whole scene)", ignore_value=NODATA, first_id=first_id))
    metrics = art.metrics
    if metrics is None and (run_dir / "metrics.json").exists():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics is not None:
        written.append(plots.plot_confusion_matrix(
            np.asarray(metrics["confusion_matrix"]), plot_dir / "confusion_matrix.png",
            metrics["class_names"]))
        if metrics.get("roc"):
            written.append(_plot_roc(metrics, classes, plot_dir / "roc.png"))
        if metrics.get("pr"):
            written.append(_plot_pr(metrics, classes, plot_dir / "pr_curves.png"))
    if art.labels is not None and art.prediction is not None:
        written.append(_plot_errors(art, classes, metrics, plot_dir / "error_map.png"))
    history = history_curves(read_history(run_dir / HISTORY_FILE))  # whatever the logger
    if history:
        written.append(plots.plot_training_curves(history, plot_dir / "training_curves.png"))
    assessment, assessment_html = _assessment(run_dir, classes, plot_dir)
    written += assessment
    status = "completed" if art.status == "running" else art.status  # report is the last stage: all others ran
    path = _write_html(run_dir, written, metrics, assessment_html, _identity_html(run_dir, status))
    log.info("report: %d plots and %s", len(written), path)
    return path


HISTOGRAM_FEATURES = 6  # panels: indices first (they separate classes best), then bands


def _feature_histograms(art: Artifacts, labels: np.ndarray, names: Sequence[str], colors: Sequence[str],
                        plot_dir: Path) -> Path:
    """Per-class distributions of the prepared features (indices first) on the labelled pixels."""
    feature_names = list(art.prepared.feature_names)
    dates = list(art.prepared.dates)
    if len(dates) > 1:  # '<date>_<name>', dates in order, the same names per date
        per = len(feature_names) // len(dates)
        base = [n.removeprefix(f"{dates[i // per]}_") for i, n in enumerate(feature_names)]
    else:
        base = feature_names
    bands = set(art.band_names)
    indices = [i for i, n in enumerate(base) if n not in bands]
    chosen = (indices + [i for i in range(len(feature_names)) if i not in indices])[:HISTOGRAM_FEATURES]
    stack, nodata = _read_small(art.prepared.path, Resampling.nearest, chosen)  # only the bands drawn
    stack = stack.astype(np.float64)
    features = {}
    for j, i in enumerate(chosen):
        band = stack[j]
        band[band == nodata] = np.nan
        features[feature_names[i]] = band
    ids = list(range(1, len(names) + 1))
    return plots.plot_feature_histograms(features, labels, ids, names, colors, plot_dir / "feature_histograms.png")


def _chip_plots(art: Artifacts, classes: ClassTable, plot_dir: Path, image: np.ndarray | None,
                bands: list[int] | None, nodata: float | None) -> list[Path]:
    """Where the chips of each split lie on the scene, and the labelled pixels each split holds."""
    records = json.loads((art.chips.path / "chips.json").read_text())["chips"]
    here = [r for r in records if r.get("scene", "data.image") == "data.image"]  # not other scenes' chips
    with rasterio.open(art.image) as src:
        shape = (src.height, src.width)
    rgb, valid = (image[bands].astype(np.float32), valid_mask(image, nodata)) if image is not None else (None, None)
    written = [plots.plot_chip_map(rgb, shape, here, plot_dir / "chips.png", valid=valid)]
    counts = split_class_counts(art.chips.path, len(classes.names))
    written.append(plots.plot_class_distribution({s: c.tolist() for s, c in counts.items()}, classes.names,
                                                 plot_dir / "class_distribution.png"))
    return written


def _plot_roc(metrics: dict, classes: ClassTable, path: Path) -> Path:
    """ROC curves from metrics.json, AUCs from its per-class scores, colours from the class table."""
    curves = {name: (roc["fpr"], roc["tpr"], metrics["per_class"][name].get("auc"))
              for name, roc in metrics["roc"].items()}
    return plots.plot_roc_curves(curves, path, dict(zip(classes.names, classes.colors, strict=False)))


def _assessment(run_dir: Path, classes: ClassTable, plot_dir: Path) -> tuple[list[Path], str]:
    """The assess stage's table and area plot, when the run holds assessment.json."""
    path = run_dir / "assessment.json"
    if not path.is_file():
        return [], ""

    result = json.loads(path.read_text())
    per_class = result["per_class"]
    plot = plot_assessment_area(per_class, plot_dir / "assessment_area.png",
                                dict(zip(classes.names, classes.colors, strict=False)))

    def fmt(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:,.{digits}f}"

    def interval(pair: list | None, digits: int = 3) -> str:
        return "n/a" if pair is None else f"[{fmt(pair[0], digits)}, {fmt(pair[1], digits)}]"

    def difference(v: dict) -> str:
        diff = area_difference(v.get("mapped_area_ha"), v.get("area_ha"))
        return "n/a" if diff is None else f"{100 * diff:+.0f} %"

    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{fmt(v['mapped_area_ha'], 0)}</td><td>{fmt(v['area_ha'], 0)}</td>"
        f"<td>{interval(v['area_ci95_ha'], 0)}</td><td>{fmt(v['users_accuracy'])}</td>"
        f"<td>{interval(v['users_accuracy_ci95'])}</td><td>{fmt(v['producers_accuracy'])}</td>"
        f"<td>{interval(v['producers_accuracy_ci95'])}</td><td>{difference(v)}</td></tr>"
        for name, v in per_class.items())
    oa = result["overall_accuracy"]
    design = result["design"]
    table = (f"<h2>Map accuracy and area (sample-based)</h2><p>The map's own accuracy and error-adjusted areas: "
             "what the map is judged by (the test split below scores only its labelled pixels).</p>"
             f"<p>Overall accuracy {fmt(oa['estimate'])} "
             f"(95 % interval {interval(oa['ci95'])}); {sum(s['sample'] for s in design['strata_sizes'].values())} "
             f"sample points, strata: {html.escape(str(design['strata']))}; labels: "
             f"{html.escape(str(design.get('labels')))}.</p><table><tr><th>class</th><th>mapped ha</th>"
             "<th>adjusted ha</th><th>95 % interval ha</th><th>user's acc.</th><th>95 % interval</th>"
             f"<th>producer's acc.</th><th>95 % interval</th><th>mapped vs adjusted</th></tr>{rows}</table>")
    return [plot], table


def _plot_pr(metrics: dict, classes: ClassTable, path: Path) -> Path:
    """Precision–recall curves from metrics.json, each class's prevalence (its share of the
    labelled test pixels) as the no-skill level."""
    support = {name: v.get("support", 0) for name, v in metrics["per_class"].items()}
    total = max(sum(support.values()), 1)
    curves = {name: (pr["recall"], pr["precision"], metrics["per_class"][name].get("ap"))
              for name, pr in metrics["pr"].items()}
    return plots.plot_pr_curves(curves, path, dict(zip(classes.names, classes.colors, strict=False)),
                                {name: n / total for name, n in support.items()})


def _scored_area(art: Artifacts, split: str, shape: tuple[int, int], factor: int) -> np.ndarray | None:
    """Pixels (on the decimated grid) inside the scored split's chips of this scene, or None."""
    if art.chips is None or not (art.chips.path / "chips.json").exists():
        return None
    records = json.loads((art.chips.path / "chips.json").read_text())["chips"]
    area = np.zeros(shape, dtype=bool)
    for r in records:
        if r["split"] == split and r.get("scene", "data.image") == "data.image":
            area[r["row"] // factor:-(-(r["row"] + r["size"]) // factor),
                 r["col"] // factor:-(-(r["col"] + r["size"]) // factor)] = True
    return area if area.any() else None


def _plot_errors(art: Artifacts, classes: ClassTable, metrics: dict | None, path: Path) -> Path:
    """Correct / omission / commission of each class where the test chips lie (every labelled
    pixel when there are none), decimated like the other maps."""
    reference, _ = _read_small(art.labels, Resampling.nearest)
    predicted, _ = _read_small(art.prediction, Resampling.nearest)
    shape = reference.shape[1:]
    with rasterio.open(art.labels) as src:  # the factor of _read_small
        factor = max(1, int(np.ceil(max(src.width, src.height) / MAX_SIDE)))
    split = (metrics or {}).get("split", "test")
    area = _scored_area(art, split, shape, factor)
    where = f"{split} area" if area is not None else "all labelled pixels"
    codes = {name: error_codes(reference[0], predicted[0], cid, classes.ids, area)
             for name, cid in zip(classes.names, classes.ids, strict=True)}
    return plots.plot_error_map(codes, path, title=f"Errors per class ({where})")


def _interval_text(ci: list[float] | None) -> str:
    """'[lo, hi]' of a 95 % interval, or '' when there is none."""
    return "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _interval_note(metrics: dict) -> str:
    """The line under the scores saying how their intervals were made."""
    method = metrics.get("ci95_method")
    return f"<p>95 % intervals: {html.escape(method)}.</p>" if method else ""


def _identity_html(run_dir: Path, status: str) -> str:
    """Which run this is: its overrides, data, model, seed, code version and status (tells a sweep's reports apart)."""
    run = read_run(run_dir)
    overrides = " ".join(run.overrides) or ("(none: the defaults)" if (run_dir / ".hydra").is_dir() else None)
    rows = (("overrides", overrides), ("data", run.data),
            ("model", run.model), ("seed", run.seed), ("code version", run.code_version), ("status", status))
    body = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v if v is not None else 'n/a'))}</td></tr>"
                   for k, v in rows)
    return f"<table class='identity'>{body}</table>"


def _write_html(run_dir: Path, images: Sequence[Path], metrics: dict | None, extra: str = "",
                identity: str = "") -> Path:
    rows = ""
    if metrics is not None:
        ci = metrics.get("ci95") or {}
        head = "".join(
            f"<tr><th>{k}</th><td>{metrics[k]:.4f}</td><td>{_interval_text(ci.get(k))}</td></tr>"
            for k in ("accuracy", "kappa", "f1_macro", "iou_macro", "auc_macro", "ap_macro", "cross_entropy")
            if metrics.get(k) is not None
        )
        with_auc, with_ap = "auc_macro" in metrics, "ap_macro" in metrics
        per_ci = ci.get("per_class", {})
        per_class = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            + "".join(f"<td>{_format_auc(v[m])}</td>" for m in ("precision", "recall", "f1"))
            + (f"<td>{_interval_text(per_ci.get(name, {}).get('f1'))}</td>" if ci else "")
            + f"<td>{_format_auc(v['iou'])}</td>"
            + (f"<td>{_format_auc(v.get('auc'))}</td>" if with_auc else "")
            + (f"<td>{_format_auc(v.get('ap'))}</td>" if with_ap else "")
            + f"<td>{v['support']}</td></tr>"
            for name, v in metrics["per_class"].items()
        )
        auc_head = ("<th>AUC</th>" if with_auc else "") + ("<th>AP</th>" if with_ap else "")
        ci_head = "<th>F1 95 % CI</th>" if ci else ""
        coverage = metrics.get("test_coverage")
        covers = (f"<p>The test split scores {metrics.get('pixels', 0):,} labelled pixels, {100 * coverage:.1f} % of "
                  "the scene's valid pixels: its scores describe those pixels, not the map.</p>"
                  if coverage is not None else "")
        rows = (f"<h2>Test split</h2>{covers}<table><tr><th>score</th><th>value</th><th>95 % CI</th></tr>{head}</table>"
                f"{_interval_note(metrics)}<h2>Per class</h2><table><tr><th>class</th>"
                f"<th>precision</th><th>recall</th><th>F1</th>{ci_head}<th>IoU</th>{auc_head}<th>pixels</th></tr>"
                f"{per_class}</table>{_protocol_html(metrics.get('protocol'))}")
    figures = "".join(
        f'<figure><img src="plots/{p.name}" alt="{p.stem}"><figcaption>{p.stem}</figcaption></figure>'
        for p in images
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>deepgeo-runner report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:640px}figure{display:inline-block}"
        ".identity th{text-align:left}</style></head><body><h1>deepgeo-runner report</h1>"
        f"{identity}<p>Run directory: {html.escape(str(run_dir.resolve()))}</p>"
        f"{extra or _unmeasured_html(metrics)}{scene_priors_html(_read_json(run_dir / 'prediction_priors.json'))}"
        f"{rows}{_data_check_html(run_dir)}{figures}"
        "</body></html>"
    )
    return write_text_atomic(run_dir / "report.html", page)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def scene_priors_html(record: dict | None) -> str:
    """``prediction_priors.json`` as the report shows it: with which class shares the map was decided, or why
    not (``predict.prior_shift``); empty without one."""
    if not record:
        return ""
    adjusted = record.get("adjusted") or {}
    rejected = record.get("rejected_scene_share")
    shares = rejected if rejected else record.get("scene_share") or {}
    rows = "".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{_format_auc((record.get('train_share') or {}).get(name))}</td>"
        f"<td>{_format_auc(shares.get(name))}</td><td>{'yes' if adjusted.get(name) else 'no'}</td></tr>"
        for name in adjusted)
    if rejected:
        verdict = ("The scene's shares below were estimated but <b>not used</b>: the network's probabilities failed "
                   "the check (see the log); the map is decided with its training priors.")
    elif any(adjusted.values()):
        verdict = ("The map is decided with the scene's class shares, estimated from the network's probabilities "
                   f"on {record.get('sampled_pixels', 0):,} sampled pixels (predict.prior_shift), not the training "
                   "polygons' shares.")
    else:
        verdict = "No class shares were corrected (fewer than two classes with enough distinct training pixels)."
    return (f"<h2>Class priors of the scene</h2><p>{verdict}</p><table><tr><th>class</th><th>training share</th>"
            f"<th>scene share</th><th>adjusted</th></tr>{rows}</table>")


def _unmeasured_html(metrics: dict | None) -> str:
    """Where no assessment exists: one line saying that the map's accuracy is unmeasured, and how to measure it."""
    return f"<p class='unmeasured'><b>Map accuracy:</b> {html.escape(UNMEASURED)}.</p>" if metrics is not None else ""


def _protocol_html(protocol: dict | None) -> str:
    """The test scores under the field's protocol (``data.boundary_ignore_px``) beside the plain ones."""
    if not protocol:
        return ""
    head = "".join(f"<tr><th>{k}</th><td>{_format_auc(protocol.get(k))}</td></tr>"
                   for k in ("accuracy", "kappa", "f1_macro", "iou_macro"))
    per_class = "".join(f"<tr><td>{html.escape(name)}</td><td>{_format_auc(v.get('f1'))}</td>"
                        f"<td>{v.get('support', '')}</td></tr>" for name, v in protocol.get("per_class", {}).items())
    return (f"<h2>Test split under the protocol</h2><p>A ring of {protocol.get('boundary_ignore_px')} px along every "
            f"label border ignored ({protocol.get('ring_pixels_ignored')} test pixels; {protocol.get('pixels')} "
            f"scored).</p><table><tr><th>score</th><th>value</th></tr>{head}</table>"
            f"<table><tr><th>class</th><th>F1</th><th>pixels</th></tr>{per_class}</table>")


def _format_auc(auc: float | None) -> str:
    """A score, or 'n/a' where it is undefined (no reference pixel of the class)."""
    return "n/a" if auc is None else f"{auc:.3f}"


def _data_check_html(run_dir: Path) -> str:
    """The data check's table (labelled pixels per class and split) and its warnings."""
    path = run_dir / "data_report.json"
    if not path.is_file():
        return ""
    report = json.loads(path.read_text())
    splits = {k: v for k, v in report["splits"].items() if v.get("class_pixels") or v.get("external")}
    names = list(report["splits"]["train"]["class_pixels"])
    head = "".join(f"<th>{html.escape(s)}</th>" for s in splits)
    body = "".join(
        f"<tr><td>{html.escape(n)}</td>" + "".join(
            f"<td>{'(other scene)' if v.get('external') else v['class_pixels'].get(n, 0)}</td>"
            for v in splits.values()) + "</tr>" for n in names)
    nodata = report["nodata"]
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report.get("warnings", []))
    labels = f"<p>{html.escape(coverage_line(report['labels']))}</p>" if report.get("labels") else ""
    return (f"<h2>Data check</h2>{_split_line(report)}<table><tr><th>class</th>{head}</tr>{body}</table>{labels}"
            f"<p>nodata: {100 * nodata['fraction']:.1f} % of the image ({html.escape(nodata['rule'])} rule; "
            f"{html.escape(nodata['source'])})</p>" + (f"<ul>{warnings}</ul>" if warnings else ""))


def _split_line(report: dict) -> str:
    """How the split was made, with the fold of a k-fold run (``split: ..., fold 1 of 3``)."""
    method = report.get("labelled", {}).get("split_method")
    return f"<p>split: {html.escape(method)}</p>" if method else ""


def report_task(run: RunState) -> None:
    """Stage ``report``: report.html and its plots."""
    run.timed("report", write_report, run.run_dir, run.art, run.classes, run.opts.data.band_names)
