"""The core's datasets, registered through the same hook as any plugin's."""

from __future__ import annotations

from cxrzoo.hookspecs import Register, hookimpl


@hookimpl
def register_datasets(register: Register) -> None:
    pass
