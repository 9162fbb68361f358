"""Telling a failed download of pretrained weights from other errors, to say what to do offline."""

from __future__ import annotations

# Roots of the modules whose exceptions mean "could not fetch the weights".
_NETWORK_MODULES = {"huggingface_hub", "requests", "urllib3", "httpx", "httpcore", "urllib",
                    "socket", "ssl"}


def is_download_error(exc: BaseException) -> bool:
    """True when the exception (or one it was raised from) comes from fetching a file."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (OSError, TimeoutError, ConnectionError)):
            return True
        if type(current).__module__.split(".")[0] in _NETWORK_MODULES:
            return True
        current = current.__cause__ or current.__context__
    return False
