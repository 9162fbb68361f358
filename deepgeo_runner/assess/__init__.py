"""Map accuracy and area the way land-change mapping reports them (Olofsson et al. 2014, Stehman 2014).

A class map is not an area estimate: classification errors bias the pixel counts. Good practice
draws a probability sample of the map (stratified random, usually with the map classes as strata),
labels it from better reference data, and estimates the error matrix in area proportions, the
accuracies and the error-adjusted area of every class, each with its standard error.

- :mod:`.design`: sample size from a target standard error, allocation to strata, the seeded
  selection of pixels;
- :mod:`.estimate`: the stratified (ratio) estimators and their variances;
- :mod:`.area`: the area of a pixel in projected and geographic CRSs;
- :mod:`.scan`: the map and strata rasters read window by window (counts, areas, sampled pixels);
- :mod:`.sample_file`: the sample as a GeoPackage/CSV to label in a GIS, and read back.

Nothing here knows Hydra or Lightning; ``pipeline/assess.py`` is the stage around it.
"""
