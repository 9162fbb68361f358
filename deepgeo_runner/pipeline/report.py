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

from deepgeo_runner.atomic import write_text_atomic
from deepgeo_runner.geo.raster_io import valid_mask
from deepgeo_runner.geo.rasterize import NODATA
from deepgeo_runner.history import HISTORY_FILE, history_curves, read_history
from deepgeo_runner.pipeline.chips import split_class_counts
from deepgeo_runner.report import plots

if TYPE_CHECKING:
    from deepgeo_runner.artifacts import Artifacts
    from deepgeo_runner.classes import ClassTable

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
    history = history_curves(read_history(run_dir / HISTORY_FILE))  # whatever the logger
    if history:
        written.append(plots.plot_training_curves(history, plot_dir / "training_curves.png"))
    status = "completed" if art.status == "running" else art.status  # report is the last stage: all others ran
    path = _write_html(run_dir, written, metrics, _identity_html(run_dir, status))
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


def _identity_html(run_dir: Path, status: str) -> str:
    """Which run this is: its overrides, data, model, seed, code version and status (tells a sweep's reports apart)."""
    from deepgeo_runner.compare.runs import read_run

    run = read_run(run_dir)
    overrides = " ".join(run.overrides) or ("(none: the defaults)" if (run_dir / ".hydra").is_dir() else None)
    rows = (("overrides", overrides), ("data", run.data),
            ("model", run.model), ("seed", run.seed), ("code version", run.code_version), ("status", status))
    body = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v if v is not None else 'n/a'))}</td></tr>"
                   for k, v in rows)
    return f"<table class='identity'>{body}</table>"


def _write_html(run_dir: Path, images: Sequence[Path], metrics: dict | None, identity: str = "") -> Path:
    rows = ""
    if metrics is not None:
        head = "".join(
            f"<tr><th>{k}</th><td>{metrics[k]:.4f}</td></tr>"
            for k in ("accuracy", "kappa", "f1_macro", "iou_macro", "auc_macro", "cross_entropy")
            if metrics.get(k) is not None
        )
        with_auc = "auc_macro" in metrics
        per_class = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            + "".join(f"<td>{_format_auc(v[m])}</td>" for m in ("precision", "recall", "f1", "iou"))
            + (f"<td>{_format_auc(v.get('auc'))}</td>" if with_auc else "")
            + f"<td>{v['support']}</td></tr>"
            for name, v in metrics["per_class"].items()
        )
        auc_head = "<th>AUC</th>" if with_auc else ""
        rows = (f"<h2>Test split</h2><table>{head}</table><h2>Per class</h2><table><tr><th>class</th>"
                f"<th>precision</th><th>recall</th><th>F1</th><th>IoU</th>{auc_head}<th>pixels</th></tr>"
                f"{per_class}</table>")
    figures = "".join(
        f'<figure><img src="plots/{p.name}" alt="{p.stem}"><figcaption>{p.stem}</figcaption></figure>'
        for p in images
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>deepgeo-runner report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:640px}figure{display:inline-block}"
        ".identity th{text-align:left}</style></head><body><h1>deepgeo-runner report</h1>"
        f"{identity}<p>Run directory: {html.escape(str(run_dir.resolve()))}</p>{_data_check_html(run_dir)}{rows}"
        f"{figures}"
        "</body></html>"
    )
    return write_text_atomic(run_dir / "report.html", page)


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
    return (f"<h2>Data check</h2><table><tr><th>class</th>{head}</tr>{body}</table>"
            f"<p>nodata: {100 * nodata['fraction']:.1f} % of the image ({html.escape(nodata['rule'])} rule; "
            f"{html.escape(nodata['source'])})</p>" + (f"<ul>{warnings}</ul>" if warnings else ""))
