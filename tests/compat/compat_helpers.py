"""Small helpers shared by the compatibility tests (imported by conftest and tests)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time

_counter = itertools.count(1)


def unique_id(prefix: str) -> str:
    """A client/service id unique within this run (no '/', ':' or '@')."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


async def expect_error(awaitable, timeout: float = 15.0) -> BaseException:
    """Await ``awaitable`` and return the exception it raises; fail if it succeeds or hangs."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        raise AssertionError(f"expected an error, but the call hung for {timeout}s")
    exc = task.exception()
    if exc is None:
        raise AssertionError(f"expected an error, but the call returned {task.result()!r}")
    return exc


async def eventually(fn, timeout: float = 15.0, interval: float = 0.2, attempt_timeout: float = 5.0):
    """Call ``await fn()`` until it returns without raising; return its result.

    Each attempt is limited to ``attempt_timeout`` seconds. Re-raises the last error once
    ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            remaining = max(0.5, deadline - time.monotonic())
            return await asyncio.wait_for(fn(), min(attempt_timeout, remaining))
        except Exception:  # noqa: BLE001
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(interval)


class EventLog:
    """Collects events delivered to ``client.on(name, ...)`` handlers."""

    def __init__(self):
        self.items: list[tuple[str, dict]] = []
        self._changed = asyncio.Event()

    def attach(self, client, *names: str) -> "EventLog":
        for name in names:
            client.on(name, lambda msg, _n=name: self._add(_n, msg))
        return self

    def _add(self, name, msg):
        self.items.append((name, msg))
        self._changed.set()

    def matching(self, name: str, pred=lambda msg: True) -> list[dict]:
        return [m for n, m in self.items if n == name and pred(m)]

    async def wait_for(self, name: str, pred=lambda msg: True, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(name, pred)
            if found:
                return found[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(n, m.get("data")) for n, m in self.items]
                raise AssertionError(
                    f"event {name!r} matching the predicate not received within {timeout}s; "
                    f"received: {seen!r}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
