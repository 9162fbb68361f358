"""The headline of a run: the map's own accuracy and areas when an assessment exists, else one line
saying that the map is unmeasured and how to measure it, then what the test split covers.

A map is judged by its accuracy and areas, not by its test split: sparse training polygons give a
test accuracy of 1.0 on a map whose overall accuracy is 0.74 (issue 20). The console's last lines
(``deepgeo``) and the report's first table both read these plain dicts (``assessment.json`` and
``metrics.json``), so they say the same. Plain Python: no Hydra, no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNMEASURED = ("the map's accuracy is unmeasured: test-split scores describe the labelled test pixels, not the "
              "map; measure it with assess.reference=REF (a reference layer independent of the training labels) "
              "or assess.sample=SAMPLE.gpkg (a labelled stratified sample; stages=[assess] writes one to label)")


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _interval(pair: Any, digits: int = 3) -> str:
    return "n/a" if not pair or None in pair else f"[{_num(pair[0], digits)}, {_num(pair[1], digits)}]"


def area_difference(mapped: float | None, adjusted: float | None) -> float | None:
    """How much larger (> 0) or smaller the mapped area is than the error-adjusted one, as a fraction."""
    if mapped is None or not adjusted:
        return None
    return mapped / adjusted - 1.0


def _difference_text(mapped: float | None, adjusted: float | None) -> str:
    diff = area_difference(mapped, adjusted)
    return "n/a" if diff is None else f"{100 * diff:+.0f} %"


def map_summary(assessment: Mapping[str, Any]) -> str:
    """One line: the map's overall accuracy with its interval, and what it was measured against."""
    oa = assessment["overall_accuracy"]
    design = assessment.get("design", {})
    points = design.get("sample_size")
    against = design.get("labels")
    return (f"map overall accuracy {_num(oa.get('estimate'))} (95 % CI {_interval(oa.get('ci95'))})"
            + (f", {points} sample points" if points else "") + (f", {against}" if against else ""))


def map_rows(assessment: Mapping[str, Any]) -> list[dict[str, str]]:
    """Per class: user's and producer's accuracy, mapped vs adjusted area (ha) with its 95 % interval."""
    rows = []
    for name, v in assessment.get("per_class", {}).items():
        rows.append({
            "class": name,
            "user's acc.": _num(v.get("users_accuracy")),
            "producer's acc.": _num(v.get("producers_accuracy")),
            "mapped ha": _num(v.get("mapped_area_ha"), 0),
            "adjusted ha": _num(v.get("area_ha"), 0),
            "95 % interval ha": _interval(v.get("area_ci95_ha"), 0),
            "mapped vs adjusted": _difference_text(v.get("mapped_area_ha"), v.get("area_ha")),
        })
    return rows


def split_summary(metrics: Mapping[str, Any]) -> str:
    """One line: the test split's scores and the share of the scene they cover."""
    coverage = metrics.get("test_coverage")
    where = f", {100 * coverage:.1f} % of the scene's valid pixels" if coverage is not None else ""
    pixels = metrics.get("pixels")
    count = f"{pixels:,} labelled px" if pixels is not None else "labelled pixels"
    return (f"test split ({count}{where}): accuracy {metrics['accuracy']:.4f}, F1 macro {metrics['f1_macro']:.4f}, "
            f"IoU macro {metrics['iou_macro']:.4f}")


def headline_lines(assessment: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None) -> list[str]:
    """The console's last lines: the map's accuracy and areas first (or the one line saying it is
    unmeasured), then the test split's scores with what they cover."""
    lines: list[str] = []
    if assessment:
        lines.append(map_summary(assessment))
        rows = map_rows(assessment)
        if rows:
            heads = list(rows[0])
            widths = [max(len(h), *(len(r[h]) for r in rows)) for h in heads]
            lines.append("  " + "  ".join(h.rjust(w) if i else h.ljust(w)
                                          for i, (h, w) in enumerate(zip(heads, widths, strict=True))))
            for r in rows:
                lines.append("  " + "  ".join(r[h].rjust(w) if i else r[h].ljust(w)
                                              for i, (h, w) in enumerate(zip(heads, widths, strict=True))))
    else:
        lines.append(UNMEASURED)
    if metrics:
        lines.append(split_summary(metrics))
    return lines
