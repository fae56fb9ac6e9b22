"""No tracked file names one machine's layout: paths are relative to the repository, and the
shared folder beside it is found by bench/paths.py (or $ROUTEYARD_SHARED / --shared)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE = "/" + "work/"  # split so that this file does not match itself (it is skipped too)


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=True, timeout=60).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_machine_paths_in_tracked_files() -> None:
    me = Path(__file__).resolve()
    offenders = []
    for path in tracked_files():
        if path.resolve() == me or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary: model weights and the like
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if MACHINE in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not offenders, "machine paths (use paths relative to the repository):\n" + \
        "\n".join(offenders)
