"""How many messages this process hands to one provider at once.

A route is the host of an Apprise URL (``mailtos://user:pass@smtp.example.org`` → ``smtp.example.org``; for a
URL without a host, such as ``json://`` to a path, its scheme). Every send holds one of its route's slots while
it talks to the provider, so however many senders a pass runs, a provider never sees more than its limit of
connections from this process: ``ROUTE_CONCURRENCY`` names limits by host, every other route gets
``ROUTE_CONCURRENCY_DEFAULT``. The limits are per process: W workers may open up to W times as many.
"""

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit

DEFAULT_LIMIT = 4


def route_of(url: str) -> str:
    """The route of an Apprise URL: its host, lower case (credentials, port and query left out)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    return (host or url.split(":", 1)[0]).lower()


class RouteLimits:
    """A semaphore per route, sized from the configured limits (a change takes effect for new sends)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[str, int] = {}
        self._default = DEFAULT_LIMIT
        self._slots: dict[str, tuple[int, threading.BoundedSemaphore]] = {}

    def configure(self, limits: Mapping[str, int], default: int) -> None:
        with self._lock:
            self._limits = {route.lower(): int(n) for route, n in limits.items()}
            self._default = default

    def limit(self, route: str) -> int:
        return max(1, self._limits.get(route, self._default))

    def _semaphore(self, route: str) -> threading.BoundedSemaphore:
        with self._lock:
            size = self.limit(route)
            current = self._slots.get(route)
            if current is None or current[0] != size:  # sends in flight keep the one they took
                current = (size, threading.BoundedSemaphore(size))
                self._slots[route] = current
            return current[1]

    @contextmanager
    def slot(self, url: str) -> Iterator[str]:
        """Hold one of the URL's route's slots for the block (waiting for one if all are taken)."""
        route = route_of(url)
        semaphore = self._semaphore(route)
        with semaphore:
            yield route


LIMITS = RouteLimits()
