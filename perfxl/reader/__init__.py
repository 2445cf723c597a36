"""The reader, by concern. `perfxl.read` is the stage's entry point; these modules are its parts:

- `zipguard`: the zip, guarded;
- `xml`: namespaces, DTDs refused, XML text rules;
- `cells`: the one cell decoder (fast path and expat path) and shared strings;
- `parts`: OOXML parts through relationships → a raw workbook;
- `xls`: `.xls` through xlrd → a raw workbook;
- `book`: a file → its bytes, its format, its raw workbook;
- `recognise`: which form it is (stamp, properties, labels);
- `names`: where its inputs are (defined names, layout fallback) → form data (`form`).

This package imports nothing on its own, so `perfxl.reader.cells` can be used by the spec below it.
"""
