"""One small exception hierarchy. Every message names the bad value and what would fix it."""


class DeepGeoError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(DeepGeoError):
    """A config key holds a value the run cannot use."""


class InputDataError(DeepGeoError):
    """An input file is missing, unreadable or inconsistent with the config."""


class StageError(DeepGeoError):
    """A stage cannot run with what the earlier stages left behind."""


class TrainingDiverged(DeepGeoError):
    """The training loss became NaN or infinite: the run stops rather than learn garbage."""


class OutputWriteError(DeepGeoError):
    """A file of the run could not be written (a full disk, a read-only folder)."""


class RunInterrupted(DeepGeoError):
    """SIGINT or SIGTERM stopped the run after its last complete checkpoint; a relaunch resumes.

    ``exit_code`` follows the shell's convention, 128 + the signal number (130, 143).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)
