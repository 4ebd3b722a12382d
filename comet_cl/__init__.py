"""comet-cl: a continual-learning benchmark suite built around COMET.

The few things a researcher needs, importable from here and loaded on first use (so
``import comet_cl`` stays light: no torch, Avalanche or matplotlib until asked for):

- ``build_model(arch, variant, ...)``: a COMET, SMoE or baseline network (``comet_cl.models``)
- ``make_stream(name, ...)``: a stream as an Avalanche benchmark (``comet_cl.streams``)
- ``run_suite(spec, out, ...)``: run a suite, resumably (``comet_cl.runner``)
- ``load_results(*folders)``: finished runs as a pandas frame, metrics recomputed from the
  raw matrices (``comet_cl.report.load``; no matplotlib)
- ``RunConfig``, ``RunSummary``: the typed run contract (``comet_cl.contract``)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "build_model": "comet_cl.models",
    "make_stream": "comet_cl.streams",
    "StreamSpec": "comet_cl.streams",
    "run_suite": "comet_cl.runner",
    "load_results": "comet_cl.report.load",
    "RunConfig": "comet_cl.contract",
    "RunSummary": "comet_cl.contract",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'comet_cl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
