"""``summary.html``: one self-contained page comparing runs (no file or network beside it needed).

A sortable table of the runs (click a column head), the intervals of repeated settings, and
the key plots of every run side by side. Plots are embedded as data URIs so the page can be
mailed or moved; the links to each run's ``report.html`` are relative, so they work while the
page stays next to the runs.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from deepgeo_runner.compare.comparison import Comparison
from deepgeo_runner.compare.runs import METRIC_KEYS, RunRecord

KEY_PLOTS = {  # plots/<name>.png drawn side by side, in this order
    "confusion_matrix": "Confusion matrix (test split)",
    "training_curves": "Training curves",
    "prediction": "Prediction",
}

STYLE = """
body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
small{white-space:normal}
td.over{white-space:normal;max-width:36em}
td.text,th.text{text-align:left}
table.sortable th{cursor:pointer;background:#f3f3f3}
table.sortable th.asc::after{content:" \\25B2"}
table.sortable th.desc::after{content:" \\25BC"}
tr.winner td{background:#e4f5e4;font-weight:bold}
tr.bad td{color:#a00}
code{background:#f3f3f3;padding:1px 4px}
.plots{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figure img{width:360px;border:1px solid #ddd}
figcaption{font-size:90%;text-align:center}
"""

# Click a column head to sort by it (numbers by the value in data-v), click again to reverse.
SORTER = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function(h){ h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      function key(row){
        var cell = row.cells[col], v = cell.getAttribute('data-v');
        if (v !== null && v !== '' && !isNaN(Number(v))) return [0, Number(v)];
        return [v === '' ? 2 : 1, cell.textContent];
      }
      rows.sort(function(a, b){
        var ka = key(a), kb = key(b);
        if (ka[0] !== kb[0]) return ka[0] - kb[0];
        var d = ka[1] < kb[1] ? -1 : ka[1] > kb[1] ? 1 : 0;
        return asc ? d : -d;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def _num(value: float | None, digits: int = 4) -> str:
    """A numeric cell: the full value for sorting, a rounded one to read; empty when absent."""
    if value is None:
        return "<td data-v=''></td>"
    return f"<td data-v='{value!r}'>{value:.{digits}f}</td>"


def _area(run: RunRecord, key: str) -> str:
    """An adjusted-area cell (ha), with the mapped area beside it when the run has both."""
    value = run.metrics.get(key)
    if value is None:
        return _num(None)
    mapped = run.metrics.get("mapped_" + key)
    note = f" title='mapped {mapped:,.0f} ha'" if mapped is not None else ""
    return f"<td data-v='{value!r}'{note}>{value:,.0f}</td>"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _shorten(overrides: str) -> str:
    """Overrides to read: long numbers (a search's learning rates) to 4 significant digits."""
    def number(match: re.Match) -> str:
        return f"{float(match.group(0)):.4g}"

    return re.sub(r"(?<![\w.])\d+\.\d{5,}(?:e-?\d+)?|\d\.\d+e-?\d+", number, overrides)


def _short_model(model: str | None) -> str:
    """``pkg.models.smp_model (Unet, resnet18)`` → ``smp_model (Unet, resnet18)``."""
    if not model:
        return ""
    target, _, detail = model.partition(" ")
    return f"{target.rsplit('.', 1)[-1]} {detail}".strip()


def common_overrides(runs: list[RunRecord]) -> list[str]:
    """The overrides every run shares (shown once, above the table)."""
    if not runs:
        return []
    shared = set(runs[0].overrides)
    for run in runs[1:]:
        shared &= set(run.overrides)
    return [o for o in runs[0].overrides if o in shared] if len(runs) > 1 else []


def _runs_table(c: Comparison, common: list[str]) -> str:
    metrics = [k for k in METRIC_KEYS if any(k in r.metrics for r in c.runs)]
    areas = sorted({k for r in c.runs for k in r.metrics if k.startswith("area_ha[")})  # adjusted areas (ha)
    monitors = sorted({r.monitor for r in c.runs if r.monitor})
    best_head = f"best {monitors[0]}" if len(monitors) == 1 else "best validation score"
    head = ("<tr><th class='text'>run</th><th class='text'>status</th><th class='text'>overrides</th>"
            + "".join(f"<th>{_esc(m)}</th>" for m in metrics)
            + "".join(f"<th title='error-adjusted area (assessment.json); mapped area in the cell title'>"
                      f"{_esc(a)}</th>" for a in areas)
            + f"<th>{_esc(best_head)}</th><th>best epoch</th><th>wall time (s)</th><th>seed</th>"
            "<th class='text'>model</th></tr>")
    rows = []
    for run in c.runs:
        name = _esc(c.name(run))
        link = c.link(run)
        folder = f"<a href='{_esc(link)}'>{name}</a>" if link else name
        own = " ".join(o for o in run.overrides if o not in common)
        css = "winner" if c.is_winner(run) else ("bad" if run.status not in ("completed",) else "")
        status = _esc(run.status) + (" (best trial)" if c.is_winner(run) else "")
        title = f" title='{_esc(run.error)}'" if run.error else ""
        if run.error:  # why it stopped, shortened (the whole message is the cell's tooltip)
            short = run.error if len(run.error) <= 100 else run.error[:97] + "..."
            status += f"<br><small>{_esc(short)}</small>"
        model = _short_model(run.model)
        rows.append(
            f"<tr class='{css}'><td class='text' data-v='{name}'>{folder}</td>"
            f"<td class='text'{title}>{status}</td>"
            f"<td class='text over' title='{_esc(own)}'><code>{_esc(_shorten(own))}</code></td>"
            + "".join(_num(run.metrics.get(m)) for m in metrics)
            + "".join(_area(run, a) for a in areas)
            + _num(run.best_score) + (_num(run.best_epoch, 0) if run.best_epoch is not None else _num(None))
            + (_num(run.wall_s, 1) if run.wall_s is not None else _num(None))
            + (_num(run.seed, 0) if run.seed is not None else _num(None))
            + f"<td class='text' title='{_esc(run.model or '')}'>{_esc(model)}</td></tr>")
    return f"<table class='sortable' id='runs'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _groups_table(c: Comparison) -> str:
    if not c.groups:
        return ""
    names = [k for k in ("best_score", *METRIC_KEYS) if any(k in g.intervals for g in c.groups)]
    head = ("<tr><th class='text'>setting (overrides without fold and seed)</th><th>runs</th>"
            + "".join(f"<th>{_esc('best validation score' if n == 'best_score' else n)}</th>" for n in names)
            + "</tr>")
    rows = []
    for group in c.groups:
        cells = []
        for name in names:
            iv = group.intervals.get(name)
            cells.append("<td data-v=''></td>" if iv is None else
                         f"<td data-v='{iv.mean!r}' title='95 % interval [{iv.low:.4f}, {iv.high:.4f}], "
                         f"n={iv.n}'>{iv.mean:.4f} [{iv.low:.4f}, {iv.high:.4f}]"
                         + (f" <small>(n={iv.n})</small>" if iv.n != len(group.runs) else "") + "</td>")
        counted = group.counted()
        rows.append(f"<tr><td class='text'><code>{_esc(' '.join(group.overrides) or '(none)')}</code></td>"
                    f"<td data-v='{counted.split('-')[-1]}' title='{len(group.runs)} runs of this setting'>"
                    f"{counted}</td>{''.join(cells)}</tr>")
    return ("<h2>Repeated settings: mean [95 % t-interval, clipped to the metric's range] across folds and "
            "seeds</h2>"
            f"<table class='sortable' id='groups'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")


def _search_html(c: Comparison) -> str:
    s = c.search
    if s is None:
        return ""
    params = _esc(_shorten(", ".join(f"{k}={v}" for k, v in s.best_params.items())))
    if s.folder is not None:
        name = _esc(c.name(next(r for r in c.runs if r.path == s.folder)))
        where = f"folder <b>{name}</b>" + (f" (trial {s.trial})" if s.trial is not None else "")
    else:
        where = "a trial whose folder is not among these runs"
    count = f"; the stored study holds {s.n_trials} trials" if s.n_trials is not None else ""
    value = f"{float(s.best_value):.4f}" if s.best_value is not None else "n/a"
    return f"<p class='search'>Optuna search: the best value {value} came from {where}: {params}{count}.</p>"


def _plots_html(c: Comparison) -> str:
    sections = []
    for key, title in KEY_PLOTS.items():
        figures = "".join(
            f"<figure><img src='{_data_uri(path)}' alt='{_esc(key)} of {_esc(c.name(run))}'>"
            f"<figcaption>{_esc(c.name(run))}</figcaption></figure>"
            for run in c.runs if (path := run.plot(key)) is not None)
        if figures:
            sections.append(f"<h2>{_esc(title)}</h2><div class='plots'>{figures}</div>")
    return "".join(sections)


def summary_html(c: Comparison) -> str:
    """The whole page."""
    common = common_overrides(c.runs)
    shared = (f"<p>Overrides of every run: <code>{_esc(' '.join(common))}</code></p>" if common else "")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>deepgeo-runner: {len(c.runs)} runs compared</title><style>{STYLE}</style></head><body>"
        f"<h1>{len(c.runs)} runs compared</h1>{_search_html(c)}{shared}"
        "<p>Click a column head to sort. Scores are on the test split; the best validation score "
        "(train.monitor) is what a search optimizes.</p>"
        f"{_runs_table(c, common)}{_groups_table(c)}{_plots_html(c)}"
        f"<script>{SORTER}</script></body></html>"
    )
