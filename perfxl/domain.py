"""Domain constants, each in one place: what money units a form may use, which cell values are Excel
errors, how close two sums must be, and which year a form is for when nothing says so."""

from __future__ import annotations

import datetime

# Money units written in forms and targets, with their factor to 元. Every conversion uses this table,
# so "≤50千元" is costed exactly like "≤5万元".
MONEY_UNITS: dict[str, int] = {"元": 1, "千元": 1_000, "万元": 10_000, "亿元": 100_000_000}

# Every error value Excel, WPS and LibreOffice write into a cell (and xlrd's "#ERR" for an unknown code).
EXCEL_ERROR_VALUES = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA",
                                "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!",
                                "#ERR"})

# Two amounts differ when they are further apart than this, in the form's money unit: 0.01 万元 or 1 分
# is already a difference a consolidator must hear of. The live checks in generated forms use the same.
SUM_TOLERANCE = 0.005


def default_year() -> int:
    """The budget year when neither the form, the options nor the roster says: declarations are made in
    the autumn for the next year."""
    return datetime.date.today().year + 1

ABOUT_SHEET = "说明"  # the summary sheet that says how it was made; the report adds to it
