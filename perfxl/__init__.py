"""perfxl: budget performance-target declaration forms (预算绩效目标申报表) — generate, read, validate, merge.

The public Python API (see README, "From Python"):

    load_template, generate, validate, merge, open_ledger, PerfxlError

They are imported on first use, so `import perfxl` (and the CLI) stays quick.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_template", "generate", "validate", "merge", "open_ledger", "LedgerView",
           "PerfxlError"]


def __getattr__(name: str):
    if name == "PerfxlError":
        from .errors import PerfxlError

        return PerfxlError
    if name in {"load_template", "generate", "validate", "merge", "open_ledger", "LedgerView"}:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'perfxl' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
