"""deepgeo-runner: the DeepGeo analysis cycle (prepare, rasterize, chips, fit, test, predict,
report) for remote-sensing segmentation, driven by one composed Hydra config.

Every stage is also a plain Python function; see :mod:`deepgeo_runner.pipeline`.
"""

__version__ = "0.1.0"
