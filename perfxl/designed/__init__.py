"""Templates designed in Excel (perfxl template import): a bureau's own blank form, with definition
sheets 字段 / 表格 / 规则 / 设置 saying what is input, becomes a template like any other. `importer` checks
the definition sheets and writes the template; `form` builds each unit's workbook from the design."""
