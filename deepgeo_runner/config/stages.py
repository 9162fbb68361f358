"""The stage table: every stage of the cycle, what it needs and produces, whether its output is
cached, and what runs it. Validation (:mod:`deepgeo_runner.config.validate`), the run's
record (:mod:`deepgeo_runner.pipeline.record`) and the runner (:mod:`deepgeo_runner.pipeline.runner`)
all read it; nothing else lists the stages.

A new stage touches exactly these files:

1. ``deepgeo_runner/stages/<name>.py``: its config-free function, plain values in, its result out;
2. one row here: ``run="<name>:<function>"`` (under ``deepgeo_runner.stages``), and, if the function
   takes options, ``options="<adapter>"``: a function ``adapter(run) -> dict`` of its keyword arguments,
   added to ``deepgeo_runner/pipeline/stage_options.py`` (the one module that reads the run config for a
   stage); ``artifact`` names the :class:`~deepgeo_runner.pipeline.artifacts.Artifacts` field the result
   goes to (none: ``art.stage_outputs[<name>]``);
3. its config keys, if it has new ones: ``config/schema.py`` (and ``conf/`` where they are documented).

The runner calls ``function(**adapter(run))``, timed under the stage's name, and stores the result.
A stage that must do more than that between the run and its function (Lightning's fit/test/predict,
the cached stages and their keys, the data check, the assessment and the report) keeps a task
function in ``deepgeo_runner/pipeline/`` instead: ``task="<module>:<function>"``, ``task(run)`` with
the runner's :class:`RunState`. Rows name what runs them, they do not import it: the table sits below
the layers it points up to.

Only the standard library is imported here: the config checks read the table before GDAL or torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One row of the stage table."""

    name: str  # as ``stages=[...]`` names it
    needs: tuple[str, ...]  # stages whose outputs it reads: they run first (a cached one not listed is reused)
    produces: tuple[str, ...]  # what it leaves in the run directory or the cache
    cached: bool  # its output is a content-addressed cache entry, built only when the stage is listed
    task: str = ""  # "module:function" under deepgeo_runner.pipeline, called as task(run); or else ``run``:
    default: bool = True  # part of the default cycle (``stages`` unset)
    always: bool = False  # runs in every run of a scene, listed or not (the data check comes before any data stage)
    datamodule: bool = False  # applies to the ready-made chips of a datamodule (data=torchgeo)
    weights: bool = False  # needs trained weights: ``fit`` in the same run, or ``predict.checkpoint``
    first_rank: bool = False  # rank 0 alone runs it (the others have nothing to add)
    run: str = ""  # "module:function" under deepgeo_runner.stages, called with the options' keyword arguments
    options: str = ""  # a function of deepgeo_runner.pipeline.stage_options: run state → those arguments
    artifact: str = ""  # the Artifacts field that keeps the result (none: art.stage_outputs[name])

    def __post_init__(self) -> None:
        if bool(self.task) == bool(self.run):
            raise ValueError(f"stage {self.name!r}: give the row a task (pipeline) or a run (stages), one of them")
        if self.task and (self.options or self.artifact):
            raise ValueError(f"stage {self.name!r}: options and artifact go with run, not with task")


TABLE: tuple[Stage, ...] = (
    Stage("check", ("rasterize",), ("data_report.json",), cached=False, task="checking:check_task", always=True),
    Stage("prepare", ("rasterize",), ("prepared stack (cache)",), cached=True, task="cached_stages:prepare_task"),
    Stage("rasterize", (), ("labels.tif (cache)", "split map"), cached=True, task="cached_stages:rasterize_task",
          always=True),
    Stage("chips", ("prepare", "rasterize"), ("chip store (cache)",), cached=True, task="cached_stages:chips_task"),
    Stage("fit", ("chips",), ("checkpoints/", "logs/"), cached=False, task="learning:learn_task", datamodule=True),
    Stage("test", ("chips",), ("metrics.json",), cached=False, task="learning:learn_task", datamodule=True,
          weights=True),
    Stage("predict", ("prepare",), ("prediction.tif",), cached=False, task="learning:learn_task", weights=True),
    Stage("assess", ("prepare",), ("assessment.json",), cached=False, task="assess:assess_task", default=False,
          first_rank=True),
    Stage("report", ("prepare",), ("report.html", "plots/"), cached=False, task="report:report_task",
          first_rank=True),
    Stage("export", (), ("export/model.onnx", "export/model.pt2", "export/mlm.json"), cached=False,
          default=False, weights=True, first_rank=True,
          run="export_run:export_run_model", options="export_options", artifact="exported"),
)

BY_NAME = {stage.name: stage for stage in TABLE}
STAGES: tuple[str, ...] = tuple(stage.name for stage in TABLE)
DEFAULT_STAGES: tuple[str, ...] = tuple(stage.name for stage in TABLE if stage.default)  # assess: see run_stages
DATAMODULE_STAGES: tuple[str, ...] = tuple(stage.name for stage in TABLE if stage.datamodule)
WEIGHT_STAGES: tuple[str, ...] = tuple(stage.name for stage in TABLE if stage.weights)
ASSESS_ONLY = {"assess", "report"}  # stages that need a class map, not the scene


def needed(stages: Iterable[str]) -> set[str]:
    """The listed stages and every stage they need, directly or through another."""
    found: set[str] = set()
    todo = list(stages)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(BY_NAME[name].needs)
    return found


def cycle(stages: Sequence[str]) -> list[Stage]:
    """The rows a run of a scene goes through, in the order they run: each after what it needs.

    The listed stages, the stages they need (a cached one only reused) and the ones that always run."""
    wanted = needed([*stages, *(s.name for s in TABLE if s.always)])
    order: list[Stage] = []

    def visit(stage: Stage) -> None:
        if stage in order:
            return
        for name in stage.needs:
            visit(BY_NAME[name])
        order.append(stage)

    for stage in TABLE:
        if stage.name in wanted:
            visit(stage)
    return order


def is_assess_only(stages: Sequence[str]) -> bool:
    """The stages assess an existing map and nothing else (``stages=[report]`` alone is no assessment)."""
    return "assess" in stages and set(stages) <= ASSESS_ONLY
