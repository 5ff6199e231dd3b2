"""The command line's one error handler, shared by every group and command of cxrzoo.

Errors become one line on stderr and an exit code: 2 when the command line, a name or a
config value is wrong (click's usage errors too); 3 when a file, data set, store entry,
cache or the Hub is not as expected; 70 for an unexpected error, a bug (``CXRZOO_DEBUG=1``
shows its traceback). Plugins that add commands can use :class:`ZooCommand` and
:class:`ZooGroup` to get the same behaviour.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from cxrzoo.errors import INTERNAL_EXIT_CODE, CxrzooError, DataError, UserError, one_line


class CommandError(click.ClickException):
    """A :class:`~cxrzoo.errors.CxrzooError` shown as one line, with that error's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _internal(exc: BaseException) -> CommandError:
    if os.environ.get("CXRZOO_DEBUG"):
        traceback.print_exception(exc)
    return CommandError(
        one_line(
            f"internal error: {type(exc).__name__}: {exc} (this is a bug; set CXRZOO_DEBUG=1 to see "
            f"the traceback and report it)",
            limit=600,
        ),
        INTERNAL_EXIT_CODE,
    )


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn any exception but click's own into a :class:`CommandError`."""
    try:
        yield
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except CxrzooError as exc:
        raise CommandError(one_line(exc), exc.exit_code) from None
    except OSError as exc:
        # The machine's side of a file: disk full, read-only folder, permission denied.
        if exc.filename is not None or exc.strerror:
            where = f"{exc.filename}: " if exc.filename is not None else ""
            raise CommandError(one_line(f"{where}{exc.strerror or exc}"), DataError.exit_code) from None
        raise _internal(exc) from None
    except ImportError as exc:
        from cxrzoo.optional import as_missing_dependency

        hint = as_missing_dependency(exc)
        if hint is None:
            raise _internal(exc) from None
        raise CommandError(one_line(hint), hint.exit_code) from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except Exception as exc:
        raise _internal(exc) from None


class ZooCommand(click.Command):
    """A click command whose errors are one line (see the module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors():
            return super().invoke(ctx)


class ZooGroup(click.Group):
    """A click group whose errors (its own and its commands') are one line."""

    command_class = ZooCommand

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors():
            return super().invoke(ctx)


ZooGroup.group_class = ZooGroup


def check_device(text: str, *, option: str = "--device") -> str:
    """``text`` as a torch device string (``cpu``, ``cuda``, ``cuda:1``, ``mps`` …) that this
    machine has; a one-line :class:`~cxrzoo.errors.UserError` otherwise. Imports PyTorch."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(
            f"{option} {text!r}: not a device name; expected cpu, cuda, cuda:N, mps or another PyTorch device"
        ) from None
    kind, index = device.type, device.index
    if kind == "cpu":
        return str(device)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{option} {text}: PyTorch sees no CUDA device on this machine")
        count = torch.cuda.device_count()
        if index is not None and index >= count:
            have = ", ".join(f"cuda:{i}" for i in range(count))
            raise UserError(f"{option} {text}: this machine has {count} CUDA device(s): {have}")
        return str(device)
    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"{option} {text}: the Apple MPS device is not available on this machine")
        return str(device)
    backend = getattr(torch, kind, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise UserError(f"{option} {text}: PyTorch has no available {kind!r} device on this machine")
    count_of = getattr(backend, "device_count", None)
    if index is not None and count_of is not None and index >= count_of():
        raise UserError(f"{option} {text}: this machine has {count_of()} {kind} device(s)")
    return str(device)


class DeviceType(click.ParamType):
    """A ``--device`` value: any PyTorch device string that this machine has (``cpu``, ``cuda``,
    ``cuda:1``, ``mps`` …). Checked with :func:`check_device` when the option is given, so
    commands that do not get it never import PyTorch; a bad value is one line, exit code 2."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not isinstance(value, str):
            value = str(value)
        option = param.opts[0] if param is not None and param.opts else "--device"
        return check_device(value, option=option)


#: The shared ``--device`` parameter type.
DEVICE = DeviceType()

__all__ = [
    "DEVICE",
    "CommandError",
    "DeviceType",
    "ZooCommand",
    "ZooGroup",
    "check_device",
    "one_line_errors",
]
