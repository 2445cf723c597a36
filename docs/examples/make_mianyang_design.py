"""Draws templates/designs/绵阳项目支出绩效目标表样.xlsx: the 2021 绵阳 项目基本信息表 and 项目支出绩效目标申报表
(seed 002) as a form designer would in Excel, with the four definition sheets of `perfxl template import`.

The committed workbook is what the guide (docs/模板编写指南.md) walks through; this script is how it was
made, so it can be made again:  python docs/examples/make_mianyang_design.py
"""

from __future__ import annotations

from pathlib import Path

import openpyxl
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.worksheet.pagebreak import Break

OUT = Path(__file__).resolve().parents[2] / "templates" / "designs" / "绵阳项目支出绩效目标表样.xlsx"
THIN = Side(style="thin")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
SONG = "宋体"
LABEL_FILL = PatternFill("solid", fgColor="F2F2F2")

FIELDS = [  # 单元格, 标识, 标签, 类型, 必填, 选项, 说明, 默认值
    ("B3", "unit_name", "填报单位(盖章)", "文本", "是", "", "", "{{ unit.name }}"),
    ("B4", "project_name", "项目名称", "文本", "是", "", "", ""),
    ("B5", "project_attr", "项目属性", "选项", "是",
     "新增一次性项目、新增经常性项目、延续性据实结算项目、延续性其他常年性项目、延续性一次性项目", "", ""),
    ("E5", "project_kind", "项目类型", "选项", "是", "其他项目支出、专项业务费、基本建设项目、信息化建设项目、政策补贴项目", "", ""),
    ("B6", "subject_code", "功能科目编码", "编码", "是", "", "7位功能科目（项级）编码，例如 2210302", ""),
    ("E6", "subject_name", "科目名称", "文本", "是", "", "", ""),
    ("B7", "budget", "项目预算金额", "金额", "是", "", "单位：元", ""),
    ("B8", "implementing_unit", "项目实施单位", "文本", "是", "", "", "{{ unit.name }}"),
    ("B9", "period", "项目起止时间", "起止日期", "是", "", "例如 {{ year }}-01-01至{{ year }}-12-31", ""),
    ("D9", "manager", "项目负责人", "文本", "是", "", "", ""),
    ("F9", "phone", "联系电话", "电话", "否", "", "", ""),
    ("B10", "overview", "项目概况", "长文本", "是", "", "", ""),
    ("B11", "unit_leader", "单位负责人", "文本", "否", "", "", ""),
    ("D11", "preparer", "填报人", "文本", "否", "", "", ""),
    ("F11", "fill_date", "填报日期", "日期", "否", "", "", ""),
    ("B13", "project_name_2", "项目名称", "文本", "是", "", "与项目基本信息表中的项目名称一致", ""),
    ("B15", "annual_goal", "年度目标", "长文本", "是", "", "", ""),
]


def label(ws, ref: str, text: str, bold: bool = False, align: str = "left") -> None:
    ws[ref] = text
    ws[ref].font = Font(name=SONG, size=11, bold=bold)
    ws[ref].alignment = Alignment(horizontal=align, vertical="center", wrap_text=True)
    ws[ref].border = BOX
    ws[ref].fill = LABEL_FILL


def boxed(ws, area: str) -> None:
    for row in ws[area]:
        for cell in row:
            cell.border = BOX


def draw(ws) -> None:
    for col, width in zip("ABCDEF", (14, 16, 26, 16, 24, 16)):
        ws.column_dimensions[col].width = width
    ws.merge_cells("A1:F1")
    ws["A1"] = "项目基本信息表"
    ws["A1"].font = Font(name="黑体", size=16, bold=True)
    ws["A1"].alignment = Alignment(horizontal="center", vertical="center")
    ws.row_dimensions[1].height = 32
    ws.merge_cells("A2:F2")
    ws["A2"] = "（{{ year }}年）"
    ws["A2"].alignment = Alignment(horizontal="center")
    label(ws, "A3", "填报单位(盖章)：")
    ws.merge_cells("B3:D3")
    ws.merge_cells("E3:F3")
    ws["E3"] = "单位：元"
    ws["E3"].alignment = Alignment(horizontal="right")
    label(ws, "A4", "项目名称")
    ws.merge_cells("B4:F4")
    label(ws, "A5", "项目属性：")
    ws.merge_cells("B5:C5")
    label(ws, "D5", "项目类型：")
    ws.merge_cells("E5:F5")
    label(ws, "A6", "功能科目编码：")
    ws.merge_cells("B6:C6")
    label(ws, "D6", "科目名称：")
    ws.merge_cells("E6:F6")
    label(ws, "A7", "项目预算金额：")
    ws.merge_cells("B7:F7")
    label(ws, "A8", "项目实施单位：")
    ws.merge_cells("B8:F8")
    label(ws, "A9", "项目起止时间：")
    label(ws, "C9", "项目负责人：")
    label(ws, "E9", "联系电话：")
    label(ws, "A10", "项目概况", align="center")
    ws.merge_cells("B10:F10")
    ws.row_dimensions[10].height = 120
    label(ws, "A11", "单位负责人：")
    label(ws, "C11", "填报人：")
    label(ws, "E11", "填报日期：")
    boxed(ws, "A3:F11")
    ws.row_breaks.append(Break(id=11))
    ws.merge_cells("A12:F12")
    ws["A12"] = "项目支出绩效目标申报表"
    ws["A12"].font = Font(name="黑体", size=16, bold=True)
    ws["A12"].alignment = Alignment(horizontal="center", vertical="center")
    ws.row_dimensions[12].height = 32
    label(ws, "A13", "项目名称")
    ws.merge_cells("B13:F13")
    ws.merge_cells("A14:F14")
    label(ws, "A14", "总体目标", bold=True)
    label(ws, "A15", "年度目标", align="center")
    ws.merge_cells("B15:F15")
    ws.row_dimensions[15].height = 60
    for ref, text in (("A16", "一级指标"), ("B16", "二级指标"), ("C16", "三级指标"), ("E16", "指标值（包含数字及文字描述）")):
        label(ws, ref, text, bold=True, align="center")
    ws.merge_cells("C16:D16")
    ws.merge_cells("E16:F16")
    for r in range(17, 41):
        ws.merge_cells(f"C{r}:D{r}")
        ws.merge_cells(f"E{r}:F{r}")
    boxed(ws, "A13:F40")
    ws.print_area = "A1:F40"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = "portrait"
    ws.print_options.horizontalCentered = True


def main() -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "项目表"
    draw(ws)
    sheets = {
        "字段": [("单元格", "标识", "标签", "类型", "必填", "选项", "说明", "默认值"), *FIELDS],
        "表格": [("区域", "标识", "标签", "列类型", "指标层级"),
                ("A17:F40", "indicators", "项目支出绩效目标申报表", "选项、选项、文本、指标值", "national")],
        "规则": [("规则", "参数", "严重程度", "说明"),
                ("same_text", "fields=project_name、project_name_2", "提醒", "两张表上的项目名称不一致，请核对")],
        "设置": [("项目", "值"), ("模板标识", "mianyang/designed"), ("版本", "2021.1"), ("标题", "项目基本信息表"),
                ("金额单位", "元"), ("多项目", "是"), ("工作表名称", "项目{n}"), ("地区", "绵阳市"),
                ("项目名称字段", "project_name"), ("预算字段", "budget"), ("单位名称字段", "unit_name")],
    }
    for title, rows in sheets.items():
        sheet = wb.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.column_dimensions["A"].width = 14
        sheet.column_dimensions["B"].width = 22
    OUT.parent.mkdir(parents=True, exist_ok=True)
    wb.save(OUT)
    print(OUT)


if __name__ == "__main__":
    main()
