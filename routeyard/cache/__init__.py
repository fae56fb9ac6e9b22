"""Semantic response cache: exact and embedding-similarity lookups, scoped per decision and
tenant, in process (`MemoryCache`) or mirrored from Redis (`RedisCache`). The plugin that uses
it is `routeyard/plugins/cache_plugin.py` (`type: semantic_cache`)."""

from routeyard.cache.keys import RequestKey, request_key, scope_of, tenant_of
from routeyard.cache.memory import Entry, MemoryCache

__all__ = ["Entry", "MemoryCache", "RequestKey", "request_key", "scope_of", "tenant_of"]
