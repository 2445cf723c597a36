"""Edit a workbook the way a clerk does in LibreOffice Calc, through UNO (run with Debian's python3).

usage: python3 lo_edit.py SRC DST [insert-rows SHEET ROW COUNT] [copy-sheet SHEET NEWNAME] [fill SHEET CELL TEXT]
       [delete-sheet SHEET]
Operations run in order; DST is stored as .xlsx (Calc MS Excel 2007 XML) or .xls (MS Excel 97) by extension.
ROW is 1-based: rows are inserted above it, as "Insert Rows Above" on that row does.
"""

import os
import subprocess
import sys
import tempfile
import time
import uuid

import uno
from com.sun.star.beans import PropertyValue


def prop(name, value):
    p = PropertyValue()
    p.Name, p.Value = name, value
    return p


def main(argv):
    src, dst, ops = os.path.abspath(argv[0]), os.path.abspath(argv[1]), argv[2:]
    pipe = "perfxl_" + uuid.uuid4().hex[:8]
    profile = tempfile.mkdtemp(prefix="lo-profile-")
    soffice = subprocess.Popen(["soffice", "--headless", "--invisible", "--norestore", "--nologo",
                                f"-env:UserInstallation=file://{profile}", f"--accept=pipe,name={pipe};urp;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        for _ in range(120):
            try:
                ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
                break
            except Exception:
                time.sleep(0.25)
        else:
            raise SystemExit("LibreOffice did not start")
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(src), "_blank", 0, (prop("Hidden", True),))
        sheets = doc.Sheets
        i = 0
        while i < len(ops):
            op = ops[i]
            if op == "insert-rows":
                sheet = sheets.getByName(ops[i + 1])
                was = sheet.isProtected()
                if was:
                    sheet.unprotect("")
                sheet.Rows.insertByIndex(int(ops[i + 2]) - 1, int(ops[i + 3]))
                if was:
                    sheet.protect("")
                i += 4
            elif op == "copy-sheet":
                sheets.copyByName(ops[i + 1], ops[i + 2], sheets.Count)
                i += 3
            elif op == "fill":
                sheet = sheets.getByName(ops[i + 1])
                was = sheet.isProtected()
                if was:
                    sheet.unprotect("")
                cell = sheet.getCellRangeByName(ops[i + 2])
                text = ops[i + 3]
                try:
                    cell.setValue(float(text))
                except ValueError:
                    cell.setString(text)
                if was:
                    sheet.protect("")
                i += 4
            elif op == "delete-sheet":
                sheets.removeByName(ops[i + 1])
                i += 2
            else:
                raise SystemExit(f"unknown operation {op}")
        doc.calculateAll()
        fltr = "MS Excel 97" if dst.lower().endswith(".xls") else "Calc MS Excel 2007 XML"
        doc.storeToURL(uno.systemPathToFileUrl(dst), (prop("FilterName", fltr), prop("Overwrite", True)))
        doc.close(True)
    finally:
        try:
            desktop.terminate()
        except Exception:
            pass
        try:
            soffice.wait(timeout=20)
        except subprocess.TimeoutExpired:
            soffice.kill()
        subprocess.run(["rm", "-rf", profile])


if __name__ == "__main__":
    main(sys.argv[1:])
