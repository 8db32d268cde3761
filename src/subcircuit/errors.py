"""The one exception type for bad user input.

Every `UserError` becomes a one-line message and exit code 2 on the command line. Its text
names the bad value and what would be valid; `suggest` adds the closest valid name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(ValueError):
    """Bad input from the user: a one-line message naming the bad value and the valid ones."""


def suggest(name: str, valid: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest valid name, or ''."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """A UserError for an unknown name, listing the valid ones and the closest match."""
    valid = sorted(valid)
    return UserError(f"unknown {kind} {name!r}{suggest(name, valid)}; valid: {', '.join(valid)}")
