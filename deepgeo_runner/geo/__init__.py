"""Geo layer: rasters, vectors, windows and grids as numpy/xarray/rasterio objects.

Nothing here imports torch, Hydra or Lightning.
"""
