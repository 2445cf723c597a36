"""A designed workbook made from scratch, as a bureau's form designer would draw it in Excel: a titled
form with merged label cells, widths and fonts of its own, an indicator table, and the four definition
sheets. Tests break one definition at a time to see the importer's messages."""

from __future__ import annotations

from pathlib import Path

import openpyxl
from openpyxl.styles import Alignment, Border, Font, Side

THIN = Side(style="thin")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
TITLE_FONT = Font(name="黑体", size=18, bold=True)
LABEL_FONT = Font(name="仿宋", size=12, bold=True)

FIELDS = [  # 单元格, 标识, 标签, 类型, 必填, 选项, 说明, 默认值
    ("B3", "", "", "文本", "是", "", "", "{{ unit.name }}"),
    ("B4", "project_name", "项目名称", "文本", "是", "", "与预算系统中的项目名称一致", ""),
    ("E4", "project_kind", "", "选项", "是", "经常性项目、一次性项目", "", ""),
    ("B5", "total", "资金总额", "金额", "是", "", "单位：万元", ""),
    ("D5", "fiscal", "财政资金", "金额", "否", "", "", ""),
    ("F5", "other", "其他资金", "金额", "否", "", "", ""),
    ("B6", "goal", "年度目标", "长文本", "是", "", "", ""),
]
TABLE = ("A9:F20", "indicators", "绩效指标", "文本、文本、文本、指标值、文本", "national")
RULES = [("field_sum", "total=total；parts=fiscal、other", "错误", "")]
SETTINGS = [("模板标识", "acme/fund"), ("版本", "2025.1"), ("标题", "某区专项资金绩效目标表"), ("金额单位", "万元"),
            ("多项目", "否")]


def make_design(path: Path, fields=None, table=TABLE, rules=None, settings=None, extra_tables=()) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "目标表"
    for col, width in zip("ABCDEF", (14, 22, 12, 18, 12, 18)):
        ws.column_dimensions[col].width = width
    ws.merge_cells("A1:F1")
    ws["A1"] = "{{ year }}年某区专项资金绩效目标表"
    ws["A1"].font = TITLE_FONT
    ws["A1"].alignment = Alignment(horizontal="center")
    ws.row_dimensions[1].height = 36
    labels = {"A3": "填报单位", "A4": "项目名称", "D4": "项目类型", "A5": "资金总额", "C5": "财政资金", "E5": "其他资金",
              "A6": "年度目标"}
    for ref, text in labels.items():
        ws[ref] = text
        ws[ref].font = LABEL_FONT
        ws[ref].border = BOX
    ws.merge_cells("B3:F3")
    ws.merge_cells("B4:C4")
    ws.merge_cells("B6:F6")
    ws.row_dimensions[6].height = 60
    ws["A8"] = "一级指标"
    ws["B8"] = "二级指标"
    ws["C8"] = "三级指标"
    ws.merge_cells("C8:D8")
    ws["E8"] = "指标值"
    ws["F8"] = "备注"
    for ref in ("A8", "B8", "C8", "E8", "F8"):
        ws[ref].font = LABEL_FONT
        ws[ref].border = BOX
    for r in range(9, 21):
        ws.merge_cells(f"C{r}:D{r}")
        for c in "ABCDEF":
            ws[f"{c}{r}"].border = BOX
    ws["A21"] = "填报人：                 联系电话："
    ws.print_area = "A1:F21"
    ws.page_setup.orientation = "portrait"
    ws.oddFooter.center.text = "第 &P 页"

    definitions = wb.create_sheet("字段")
    definitions.append(["单元格", "标识", "标签", "类型", "必填", "选项", "说明", "默认值"])
    for row in FIELDS if fields is None else fields:
        definitions.append(list(row))
    tables = wb.create_sheet("表格")
    tables.append(["区域", "标识", "标签", "列类型", "指标层级"])
    for row in ([table] if table else []) + list(extra_tables):
        tables.append(list(row))
    rule_sheet = wb.create_sheet("规则")
    rule_sheet.append(["规则", "参数", "严重程度", "说明"])
    for row in RULES if rules is None else rules:
        rule_sheet.append(list(row))
    setting_sheet = wb.create_sheet("设置")
    setting_sheet.append(["项目", "值"])
    for row in SETTINGS if settings is None else settings:
        setting_sheet.append(list(row))
    wb.save(path)
    return path
