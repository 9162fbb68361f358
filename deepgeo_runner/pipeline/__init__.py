"""The task layer: reads the run's typed options, chains the stages (``deepgeo_runner.stages``)
in the order of the stage table (``deepgeo_runner.config.stages``) and records the run.

The whole cycle from a composed config or the typed options::

    from deepgeo_runner.pipeline.runner import run
"""
