"""Per-decision request/response plugins (`decisions[].plugins`).

    decisions:
      - name: guarded
        rules: {signal: "keyword:forbidden"}
        candidates: [large]
        plugins:
          - {type: block, when: "keyword:forbidden", message: "I can't help with that."}
          - {type: system_prompt, mode: inject, text: "You are concise."}

This package holds the plugin API (`base`) and the built-in plugins; the serving layer runs a
decision's plugins as a `PluginChain` around its handler (`routeyard/serving/plugin_chain.py`).
"""

from routeyard.plugins import builtin as _builtin  # noqa: F401  (registers the built-ins)
from routeyard.plugins import cache_plugin as _cache  # noqa: F401  (registers semantic_cache)
from routeyard.plugins import redact as _redact  # noqa: F401  (registers pii_redact)
from routeyard.plugins import step_effort as _step  # noqa: F401  (registers step_effort)
from routeyard.plugins import tool_filter as _tool_filter  # noqa: F401  (registers tool_filter)
from routeyard.plugins.base import (
    PLUGINS,
    Plugin,
    PluginAnswer,
    PluginBuild,
    PluginContext,
    register,
)

__all__ = ["PLUGINS", "Plugin", "PluginAnswer", "PluginBuild", "PluginContext", "register"]
