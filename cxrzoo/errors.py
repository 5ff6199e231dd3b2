"""The root of cxrzoo's errors and the exit codes the command line gives them.

Every error that a user can cause or fix (a bad option, a missing file, a corrupt model
folder, an unreachable Hub) derives from :class:`CxrzooError`. The command line has one
handler for them (``cxrzoo.cli``): it prints the message as one line on stderr and exits
with the class's ``exit_code``:

- 2 (:class:`UserError`): the command line, a name or a config value is wrong;
- 3 (:class:`DataError`): a file, a data set, the store, a cache or the Hub is not as expected;
- 70 (:data:`INTERNAL_EXIT_CODE`): anything else, which is a bug in cxrzoo or a plugin
  (one line too; ``CXRZOO_DEBUG=1`` shows the traceback).

A plugin raises these (or subclasses) for its own bad input and gets the same treatment.
"""

from __future__ import annotations

#: Exit code of an unexpected exception: EX_SOFTWARE of sysexits.h.
INTERNAL_EXIT_CODE = 70


class CxrzooError(Exception):
    """An error with a message fit to show a user as it is, in one line."""

    exit_code = 1


class UserError(CxrzooError):
    """Bad input on the command line or in Python: an option, a name, a config value."""

    exit_code = 2


class DataError(CxrzooError):
    """Files or folders that are missing, unreadable or not in the expected format."""

    exit_code = 3


class LockedError(DataError):
    """Another process is writing the same store entry or cache key right now."""


def show(value: object) -> str:
    """``value`` as a message shows it: numbers as numbers (``0.5``, never ``np.float64(0.5)``),
    text quoted."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        value = item()  # a NumPy scalar as the Python number it holds
    return repr(value) if isinstance(value, str | bytes) else str(value)


def one_line(text: object, limit: int = 2000) -> str:
    """``text`` folded onto one line (and cut at ``limit`` characters)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


__all__ = ["INTERNAL_EXIT_CODE", "CxrzooError", "DataError", "LockedError", "UserError", "one_line", "show"]
