"""When to try a failed send again: capped exponential backoff with jitter, within the message's useful life.

A transient failure is retried after ``base × 2^(attempt-1)`` seconds, at most ``cap``, scaled by a random
factor in [0.5, 1] so that senders that failed together do not return together. There is no count limit: the
retries stop when the next attempt would fall after ``useful_until`` (the caller knows what that is for its
message), and the failure is then final.
"""

import random
from datetime import datetime, timedelta


def backoff_seconds(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before the attempt after ``attempts`` failed ones (``attempts`` ≥ 1)."""
    ceiling = min(cap, base * 2 ** min(max(attempts - 1, 0), 32))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def next_attempt(
    attempts: int, *, now: datetime, useful_until: datetime | None, base: float, cap: float
) -> datetime | None:
    """When to try again, or None when the message would no longer be useful by then."""
    at = now + timedelta(seconds=backoff_seconds(attempts, base=base, cap=cap))
    if useful_until is not None and at > useful_until:
        return None
    return at
