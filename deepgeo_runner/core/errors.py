"""One small exception hierarchy. Every message names the bad value and what would fix it."""


class DeepGeoError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(DeepGeoError):
    """A config key holds a value the run cannot use."""


class InputDataError(DeepGeoError):
    """An input file is missing, unreadable or inconsistent with the config."""


class StageError(DeepGeoError):
    """A stage cannot run with what the earlier stages left behind."""


class OutputError(DeepGeoError):
    """An output cannot be written where the config says; nothing half-written is left behind."""


class DiskFullError(OutputError):
    """The device (or quota) holding an output is full: free space or write elsewhere, then relaunch."""


class NotWritableError(OutputError):
    """A folder the run writes to is read-only or not ours: make it writable or choose another."""


class TrainingDiverged(DeepGeoError):
    """The training loss became NaN or infinite: the run stops rather than learn garbage."""


class RunInterrupted(DeepGeoError):
    """SIGINT or SIGTERM stopped the run after its last complete checkpoint; a relaunch resumes.

    ``exit_code`` follows the shell's convention, 128 + the signal number (130, 143).
    """

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)
