"""Transform specs: the one parser of preprocessing steps, used by configs, ``--set`` and the CLI.

A step is a registered transform name with optional literal keyword arguments, ``"resize"``
or ``"clahe(clip_limit=3.0, tile=8)"``; a list of steps is written comma-separated,
``"clahe(clip_limit=3.0, tile=8),resize,scale"``. Parsing goes through Python's own
expression parser, so commas inside a step's parentheses never split it.
This module imports neither torch nor the transforms, so configs can parse specs cheaply.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from cxrzoo.errors import UserError


class TransformError(UserError, ValueError):
    """A preprocessing spec that cannot be parsed or built."""


_FORM = "expected NAME or NAME(key=value, ...)"


@dataclass(frozen=True)
class Spec:
    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        if not self.kwargs:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.kwargs) + ")"


def _from_node(node: ast.expr, text: str) -> Spec:
    if isinstance(node, ast.Name):
        return Spec(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
        if any(kw.arg is None for kw in node.keywords):
            raise TransformError(f"Preprocessing step {text!r}: options must be key=value")
        try:
            kwargs = tuple((str(kw.arg), ast.literal_eval(kw.value)) for kw in node.keywords)
        except ValueError:
            raise TransformError(f"Preprocessing step {text!r}: options must be literals") from None
        return Spec(node.func.id, kwargs)
    raise TransformError(f"Cannot parse preprocessing step {text!r}: {_FORM}")


def parse_spec(text: str) -> Spec:
    """``"clahe(clip_limit=3.0)"`` -> ``Spec("clahe", (("clip_limit", 3.0),))``."""
    text = str(text).strip()
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise TransformError(f"Cannot parse preprocessing step {text!r}: {_FORM}") from None
    return _from_node(node, text)


def split_specs(text: str) -> list[str]:
    """``"clahe(clip_limit=3.0, tile=8),resize"`` -> ``["clahe(clip_limit=3.0, tile=8)", "resize"]``.

    Each step comes back in its normal form (``str(parse_spec(step))``).
    """
    text = str(text).strip().strip(",")
    if not text:
        return []
    try:
        node = ast.parse(f"({text},)", mode="eval").body
    except SyntaxError:
        raise TransformError(
            f"Cannot parse preprocessing {text!r}: expected steps NAME or NAME(key=value, ...) "
            f"separated by commas"
        ) from None
    assert isinstance(node, ast.Tuple)
    return [str(_from_node(elt, ast.get_source_segment(f"({text},)", elt) or text)) for elt in node.elts]


def looks_like_specs(text: str) -> bool:
    """Whether ``text`` is a list of transform steps (a name followed by ``(``, or commas)."""
    try:
        steps = split_specs(text)
    except TransformError:
        return False
    return bool(steps) and ("(" in text or len(steps) > 1)


__all__ = ["Spec", "TransformError", "looks_like_specs", "parse_spec", "split_specs"]
