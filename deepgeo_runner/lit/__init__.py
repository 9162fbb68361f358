"""Lightning layer: how to train. Knows nothing of Hydra; receives built objects."""
