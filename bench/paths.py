"""Where the data sets and peer tools live: `shared/` beside the repository.

The one place bench/ and scripts/ resolve it: a `--shared DIR` option (see `add_shared_option`)
wins, then `$ROUTEYARD_SHARED`, then the parent of the repository root (the directory holding
pyproject.toml) joined with `shared`. Scripts import it after putting bench/ on sys.path.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ENV_VAR = "ROUTEYARD_SHARED"


def repo_root() -> Path:
    """The nearest directory above this file that holds pyproject.toml."""
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    raise FileNotFoundError(f"no pyproject.toml above {here}")


def shared_dir(override: str | Path | None = None) -> Path:
    """`override` (a --shared value), else $ROUTEYARD_SHARED, else ../shared from the root."""
    chosen = override or os.environ.get(ENV_VAR)
    return Path(chosen).expanduser() if chosen else repo_root().parent / "shared"


def add_shared_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shared", type=Path, default=None, metavar="DIR",
                        help=f"the shared data/tools folder (default: ${ENV_VAR}, else "
                             "shared/ beside the repository)")
