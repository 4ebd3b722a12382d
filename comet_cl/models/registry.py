"""Name -> builder registry (timm-like) and the close-match lookup shared by every name."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")

MODELS: dict[str, Callable] = {}


def register_model(name: str, widths: list[int]) -> Callable[[T], T]:
    """Register an arch builder under `name`; `widths` are its default hidden widths."""
    def wrap(build: T) -> T:
        build.default_widths = widths
        MODELS[name] = build
        return build
    return wrap


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """table[name], or a ValueError that names the closest valid entry."""
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.0)
    raise ValueError(f"unknown {what} {name!r}; did you mean {close[0]!r}? "
                     f"(valid: {', '.join(sorted(table))})")
