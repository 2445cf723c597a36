"""perfxl: budget performance-target declaration forms (预算绩效目标申报表) — generate, read, validate, merge."""

__version__ = "0.1.0"
