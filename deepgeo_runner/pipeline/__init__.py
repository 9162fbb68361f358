"""The stages of the cycle as plain functions, and the runner that chains them from a config.

Library use, without Hydra::

    from deepgeo_runner.pipeline.prepare import prepare_scene
    from deepgeo_runner.pipeline.labels import rasterize_labels
    from deepgeo_runner.pipeline.chips import build_chip_store
"""
