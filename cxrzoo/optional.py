"""Optional dependencies: importing one that is missing is one line with the command to fix it.

cxrzoo's core needs none of these; each unlocks a feature, installed through an extra of the
``cxrzoo`` distribution (``pip install "cxrzoo[onnx]"``). :func:`require` imports a module or
raises :class:`MissingDependencyError` (exit 3) naming the feature, the package and that
command; the command line's error handler gives the same line for any ``ImportError`` of a
module listed here, wherever it is raised.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cxrzoo.errors import DataError

#: Top-level module -> (distribution to install, cxrzoo extra that installs it).
OPTIONAL = {
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "pyarrow": ("pyarrow", "parquet"),
    "pylibjpeg": ("pylibjpeg", "dicom-codecs"),
    "fastapi": ("fastapi", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "prometheus_client": ("prometheus_client", "serve"),
    "multipart": ("python-multipart", "serve"),
    "python_multipart": ("python-multipart", "serve"),
}


class MissingDependencyError(DataError):
    """An optional package a feature needs is not installed."""


def install_hint(module: str) -> str:
    """The command that installs ``module`` (its cxrzoo extra where it has one)."""
    top = module.split(".")[0]
    if top in OPTIONAL:
        return f'pip install "cxrzoo[{OPTIONAL[top][1]}]"'
    return f"pip install {top}"


def missing(module: str, purpose: str) -> MissingDependencyError:
    top = module.split(".")[0]
    package = OPTIONAL.get(top, (top, ""))[0]
    return MissingDependencyError(f"{purpose} needs {package}, which is not installed: {install_hint(top)}")


def require(module: str, *, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` saying what ``purpose``
    needs and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but broken (a dependency of its own is missing)
        raise missing(module, purpose) from None


def as_missing_dependency(exc: ImportError) -> MissingDependencyError | None:
    """The one-line error for an ``ImportError`` of an optional module; ``None`` for others."""
    name = exc.name or ""
    if name.split(".")[0] not in OPTIONAL:
        return None
    return missing(name, "This command")


__all__ = ["OPTIONAL", "MissingDependencyError", "as_missing_dependency", "install_hint", "require"]
