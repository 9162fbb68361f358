"""The run's record: which stages run, and ``provenance.json`` (inputs and their hashes,
cache keys, timings, status), rewritten as the run advances."""

from __future__ import annotations

from pathlib import Path

from deepgeo_runner.config.schema import RunConfig, run_stages
from deepgeo_runner.config.stages import DATAMODULE_STAGES
from deepgeo_runner.config.validate import uses_datamodule
from deepgeo_runner.core.cache import file_fingerprint
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.geo.scene import all_tiles, date_groups
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.inputs import external_splits
from deepgeo_runner.pipeline.provenance import write_provenance


def stages_to_run(opts: RunConfig) -> list[str]:
    """The stages to run: of the whole cycle, a datamodule's chips take only fit and test (validated);
    the default cycle assesses the map when assess.reference or assess.sample is set."""
    stages = run_stages(opts.stages, opts.assess, opts.data, opts.export)
    return [s for s in stages if s in DATAMODULE_STAGES] if uses_datamodule(opts.data) else stages


def write_run_provenance(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable) -> None:
    inputs = {}
    files = [("image", art.image), ("labels", art.labels_source)]
    for split, scene in external_splits(opts).items():
        for date, paths in date_groups(scene.image).items():
            key = f"split_scenes.{split}.image" + (f".{date}" if date else "")
            files += [(key + (f"[{i}]" if len(paths) > 1 else ""), path) for i, path in enumerate(paths)]
        files.append((f"split_scenes.{split}.labels", Path(scene.labels)))
    for name, path in files:
        if path is not None:
            inputs[name] = {"path": str(path), "sha256": file_fingerprint(path)}
    tiles = all_tiles(art.image_sources)
    if tiles and tiles != [art.image]:  # mosaic / time stack / crop: the rasters it came from
        inputs["image_sources"] = [
            {"date": date or None, "path": str(p), "sha256": file_fingerprint(p)}
            for date, paths in art.image_sources.items() for p in paths
        ]
    write_provenance(
        run_dir / "provenance.json",
        int(opts.seed),
        {
            "run_dir": str(run_dir.resolve()),
            "stages": stages_to_run(opts),
            "inputs": inputs,
            "cache_dir": str(Path(opts.paths.cache_dir).expanduser()),
            "cache_keys": art.cache_keys,
            "cache_reused": art.reused,
            "classes": {"names": classes.names, "ids": classes.ids},
            "checkpoint": str(art.checkpoint) if art.checkpoint else None,
            **({"exported": {fmt: str(path) for fmt, path in art.exported.items()}} if art.exported else {}),
            "timings_s": art.timings,
            **protocol_record(opts, art, classes),
            **({"scene_priors": art.scene_priors} if art.scene_priors else {}),
            "status": art.status,
            **({"error": art.error} if art.error else {}),
        },
    )


def protocol_record(opts: RunConfig, art: Artifacts, classes: ClassTable) -> dict:
    """The field's protocol as the run applied it (``protocol`` in provenance.json): the ignore ring of the
    chips' labels and the minimum mapping unit of the map, with the areas (by class name) before and after."""
    ring = float(getattr(opts.data, "boundary_ignore_px", 0) or 0)
    mmu = float(getattr(opts.predict, "mmu_ha", 0) or 0)
    if not ring and not mmu:
        return {}
    out: dict = {"boundary_ignore_px": ring, "mmu_ha": mmu}
    if art.sieve:
        names = dict(zip(classes.ids, classes.names, strict=True))
        sieve = dict(art.sieve)
        for key in ("area_ha_before", "area_ha_after"):
            sieve[key] = {names.get(int(i), str(i)): v for i, v in sieve[key].items()}
        out["sieve"] = sieve
    return {"protocol": out}
