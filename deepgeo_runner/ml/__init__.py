"""Torch layer: datasets, augmentation, models, prediction. Knows nothing of Hydra."""
