"""Reading JSONL inputs (labelled examples, routing datasets) with errors that name the line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


def jsonl_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for each non-blank line; a file that cannot be read is a
    ValueError naming it."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror}") from error
    with handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line


def jsonl_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; errors name the file and line."""
    for number, line in jsonl_lines(path):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: invalid JSON: {error}") from error
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object")
        yield number, row


def read_labelled(path: str | Path) -> tuple[list[str], list[str]]:
    """Lines of {"text": ..., "label": ...} ("prompt" is accepted for "text")."""
    path = Path(path)
    texts, labels = [], []
    for number, row in jsonl_objects(path):
        text, label = row.get("text", row.get("prompt")), row.get("label")
        if not isinstance(text, str) or not isinstance(label, str):
            raise ValueError(f"{path}:{number}: needs string 'text' and 'label'")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise ValueError(f"{path}: no examples")
    return texts, labels
