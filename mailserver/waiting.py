"""The one way this project waits for something: poll a condition until it holds.

Used by the lab (daemons ready, a queue empty), the benchmarks and the tests, instead of a
fixed sleep or a loop of their own. A wait that runs out says what it waited for and, with
`detail`, what it saw instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A condition that did not hold in time."""


def wait_until(condition: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1,
               what: str = "a condition", *, detail: Callable[[], str] | None = None,
               error: Callable[[str], Exception] = WaitTimeout) -> T:
    """Call `condition` every `interval` seconds until it returns something true, and return
    that. It is called once more at the deadline; if it is still false `timeout` seconds
    after the start, raise `error` (WaitTimeout unless the caller has its own exception)
    with "waited <timeout>s for <what>", followed by `detail()` when given."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            message = f"waited {timeout:g}s for {what}"
            if detail is not None:
                message += f": {detail()}"
            raise error(message)
        time.sleep(min(interval, left))
