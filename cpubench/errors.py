"""The one exception type the suite raises for a user's mistake; its message names the option or file at fault. And
how a session remembers a failure instead of retrying it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UsageError(Exception):
    """Bad option, file or environment; shown to the user without a traceback."""


def remembered(cache: dict, key: object, compute: Callable[[], T], failures: tuple[type[BaseException], ...]) -> T:
    """`cache[key]`, computed once. A failure of one of the `failures` kinds is remembered and raised again, rather
    than the work being retried by every test that asks."""
    if key not in cache:
        try:
            cache[key] = compute()
        except failures as exc:
            cache[key] = exc
    value = cache[key]
    if isinstance(value, BaseException):
        raise value
    return value
