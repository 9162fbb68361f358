"""``hparams_search=optuna``'s sweeper: hydra-optuna-sweeper's, continuing a study stored in the sweep directory.

Hydra imports every module of ``hydra_plugins`` at start-up: without the ``sweep`` extra this
module defines nothing (and warns about nothing).
"""

from __future__ import annotations

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # pip install -e ".[sweep]" brings it
    OptunaSweeper = None

if OptunaSweeper is not None:

    class ResumableOptunaSweeper(OptunaSweeper):
        """Numbers a relaunch's jobs after the stored trials; see :mod:`deepgeo_runner.sweeper`."""

        def sweep(self, arguments: list[str]) -> None:
            from deepgeo_runner.sweeper import prepare_resume

            prepare_resume(self.sweeper)
            return self.sweeper.sweep(arguments)
