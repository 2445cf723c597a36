"""Builders for broken and hostile workbooks, from a good form of the national template."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from perfxl import generator as generate
from perfxl.spec import load_spec

UNIT = {"code": "600001", "name": "良好单位", "department": "测试部门"}


def good_project(name="正常项目", budget=100.0) -> dict:
    return {"fields": {"unit_name": UNIT["name"], "project_name": name, "department": "测试部门",
                       "implementing_unit": UNIT["name"], "project_attr": "新增项目", "project_period": "2022年",
                       "long_term_goal": "长期目标", "annual_goal": "年度目标", "preparer": "张三", "phone": "88150231",
                       "funds_total_annual": budget, "funds_fiscal_annual": budget, "funds_total_mid": budget,
                       "funds_fiscal_mid": budget},
            "tables": {"indicators": [["产出指标", "数量指标", "培训人次", "≥100人次"],
                                      ["效益指标", "社会效益指标", "政策知晓率", "≥90%"],
                                      ["满意度指标", "服务对象满意度指标", "满意度", "≥95%"]]}}


def good_form(unit=UNIT, name="正常项目", budget=100.0) -> bytes:
    spec = load_spec("national/project", 2022, unit=unit)
    return generate.build_workbook(spec, unit, values=[good_project(name, budget)])


def rezip(data: bytes, replace: dict[str, bytes | None] = None, add: dict[str, bytes] = None) -> bytes:
    """A copy of an xlsx with members replaced (None removes) or added."""
    replace, add = replace or {}, add or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in replace:
                if replace[info.filename] is not None:
                    dst.writestr(info.filename, replace[info.filename])
                continue
            dst.writestr(info, src.read(info))
        for name, payload in add.items():
            dst.writestr(name, payload)
    return out.getvalue()


def member(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(name)


def project_sheet_part(data: bytes) -> str:
    """The zip member of the project sheet (the one holding the defined names)."""
    workbook = member(data, "xl/workbook.xml").decode()
    names = re.findall(r'<sheet name="([^"]+)"', workbook)
    return f"xl/worksheets/sheet{names.index('项目绩效目标') + 1}.xml"


@pytest.fixture(scope="session")
def good_bytes() -> bytes:
    return good_form()
