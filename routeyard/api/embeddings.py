"""The /v1/embeddings surface (issue 12; being built)."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
