"""The HTTP surface: the OpenAI API, the dry run, health and metrics."""

from routeyard.api.app import create_app

__all__ = ["create_app"]
