"""deepgeo-runner's Hydra plugins (Hydra takes sweepers only from the ``hydra_plugins`` namespace package)."""
