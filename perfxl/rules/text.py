"""Rules comparing text inputs."""

from __future__ import annotations

from perfxl.values import normalize_text

from . import Param, RuleKind, register


def _same(a: str, b: str) -> bool:
    return normalize_text(a).replace("(", "（").replace(")", "）") == normalize_text(b).replace("(", "（").replace(")", "）")


@register
class SameText(RuleKind):
    """Two fields hold the same text (the project name written on two sheets of the 绵阳 form)."""

    name = "same_text"
    params = (Param("fields", "fields"),)
    codes = ("name-mismatch",)

    def check(self, rule, ctx):
        first, second = rule.params["fields"][:2]
        a, b = ctx.values.get(first), ctx.values.get(second)
        if a and b and not _same(str(a), str(b)):
            ctx.out.add(rule.code, rule.severity, ctx.sheet, ctx.cells.get(second, ""), second, rule.message,
                        a=a, b=b)
