"""Routeyard: a fast, pure-Python LLM router that serves the OpenAI API.

`from routeyard import Router` gives the in-process library API; nothing heavy is imported
until it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Router", "__version__"]

if TYPE_CHECKING:
    from routeyard.router import Router


def __getattr__(name: str) -> Any:
    # Lazy, so that `routeyard --help` and the simulator do not import the whole gateway.
    if name == "Router":
        from routeyard.router import Router

        return Router
    raise AttributeError(f"module 'routeyard' has no attribute {name!r}")
