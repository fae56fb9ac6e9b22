"""Replay index: recorded answers from a routing dataset, looked up by the last user message."""

from __future__ import annotations

from pathlib import Path

from routeyard.jsonl import jsonl_objects


def normalise(text: str) -> str:
    return " ".join(text.split())


class ReplayIndex:
    """Maps prompts (exact, then whitespace-normalised) to {model: recorded response}."""

    __slots__ = ("_exact", "_normalised", "models")

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, str]] = {}
        self._normalised: dict[str, dict[str, str]] = {}
        self.models: list[str] = []

    def __len__(self) -> int:
        return len(self._exact)

    @classmethod
    def load(cls, path: str | Path) -> ReplayIndex:
        """Load a dataset folder (train.jsonl, test.jsonl, ...) or a single .jsonl file."""
        path = Path(path)
        if path.is_dir():
            files = sorted(path.glob("*.jsonl"))
            if not files:
                raise ValueError(f"no .jsonl files in {path}")
        elif path.is_file():
            files = [path]
        else:
            raise ValueError(f"replay path not found: {path}")
        index = cls()
        seen: dict[str, None] = {}
        for file in files:
            for _, row in jsonl_objects(file):
                prompt, responses = row.get("prompt"), row.get("responses")
                if not isinstance(prompt, str) or not isinstance(responses, dict):
                    continue  # rows without recorded answers cannot be replayed
                answers = {m: r for m, r in responses.items() if isinstance(r, str)}
                # First occurrence wins, so a prompt always replays the same answer.
                index._exact.setdefault(prompt, answers)
                index._normalised.setdefault(normalise(prompt), answers)
                seen.update(dict.fromkeys(answers))
        index.models = list(seen)
        return index

    def lookup(self, prompt: str) -> dict[str, str] | None:
        found = self._exact.get(prompt)
        if found is None:
            found = self._normalised.get(normalise(prompt))
        return found
