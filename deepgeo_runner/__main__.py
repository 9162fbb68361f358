"""``python -m deepgeo_runner ...`` is the ``deepgeo`` command (for environments without its script on PATH)."""

from deepgeo_runner.cli import main

if __name__ == "__main__":
    main()
