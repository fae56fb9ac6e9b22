"""Config reload without dropping requests: on SIGHUP or when the file changes.

A new Router is built beside the old one (sharing its store and metrics), started, and swapped
in; requests already running finish on the Router they started with, which is closed once its
last request is done. A config that does not validate is refused with its errors, and the old
one stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from routeyard.catalog import load_config
from routeyard.config import ConfigError, RouteyardConfig
from routeyard.preflight import BUILD_ERRORS
from routeyard.router import Router

log = logging.getLogger("routeyard.reload")

DRAIN_TIMEOUT_S = 300.0  # a replaced Router is closed after this even if streams remain


class ConfigReloader:
    def __init__(self, state: Any, path: str | Path, *, poll_s: float = 1.0) -> None:
        """`state` is the app state whose `.router` is swapped."""
        self.state = state
        self.path = Path(path)
        self.poll_s = poll_s
        self.reloads = 0
        self.last_error: str | None = None
        self._mtime = self._stat()
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # Unix, main thread only; elsewhere the file watch still works.
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if self.poll_s > 0:
            self._spawn(self._watch())

    async def stop(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def request_reload(self) -> None:
        self._spawn(self.reload())

    async def reload(self) -> bool:
        """Load, validate, build and swap. Returns whether the new config took effect."""
        async with self._lock:
            self._mtime = self._stat()
            try:
                config = await asyncio.to_thread(load_config, self.path)
            except ConfigError as error:
                self.last_error = error.render()
                log.error("config reload refused; the old config stays in force:\n%s",
                          self.last_error)
                return False
            old: Router = self.state.router
            _warn_restart_only(old.config, config)
            try:
                # Built off the event loop: fitting classifiers can take a second.
                new = await asyncio.to_thread(Router, config, store=old.store,
                                              metrics=old.metrics,
                                              base_dir=self.path.resolve().parent)
            except BUILD_ERRORS as error:
                self.last_error = f"{self.path}: {error}"
                log.error("config reload refused (%s); the old config stays in force", error)
                return False
            new.owns_store, old.owns_store = old.owns_store, False
            await new.start()
            self.state.router = new
            self.state.max_body_bytes = config.server.max_body_bytes
            self.state.api_keys = frozenset(k.get_secret_value() for k in config.server.api_keys)
            self.reloads += 1
            self.last_error = None
            log.info("config reloaded from %s (%d models, %d decisions)", self.path,
                     len(config.models), len(config.decisions))
            self._spawn(_retire(old))
            return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if self._stat() != self._mtime:
                await self.reload()

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _warn_restart_only(old: RouteyardConfig, new: RouteyardConfig) -> None:
    changed = [name for name, before, after in (
        ("state", old.state, new.state),
        ("server.host", old.server.host, new.server.host),
        ("server.port", old.server.port, new.server.port),
        ("server.log_level", old.server.log_level, new.server.log_level),
        ("server.watch_config_s", old.server.watch_config_s, new.server.watch_config_s),
        ("server.shutdown_grace_s", old.server.shutdown_grace_s, new.server.shutdown_grace_s),
        ("server.drain_delay_s", old.server.drain_delay_s, new.server.drain_delay_s),
    ) if before != after]
    if changed:
        log.warning("%s changed: these take effect on restart only", ", ".join(changed))


async def _retire(router: Router) -> None:
    """Close a replaced Router once its in-flight requests are done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT_S
    while router.in_flight > 0 and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await router.close()
