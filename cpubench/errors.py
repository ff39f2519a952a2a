"""The one exception type the suite raises for a user's mistake; its message names the option or file at fault."""

from __future__ import annotations


class UsageError(Exception):
    """Bad option, file or environment; shown to the user without a traceback."""
