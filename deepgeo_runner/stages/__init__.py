"""The stages of the cycle as config-free functions: plain values and option dataclasses in,
files and values out. They never read the run config; ``deepgeo_runner.pipeline`` does that and calls them.

Library use, without Hydra::

    from deepgeo_runner.stages.prepare import prepare_scene
    from deepgeo_runner.stages.labels import rasterize_labels
    from deepgeo_runner.stages.chips import build_chip_store
"""
