"""Report stage helpers: figures (PNG) written into ``<run>/plots/`` from plain numpy arrays."""
