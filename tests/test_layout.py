"""The architecture as the code's imports show it: data flows one way, and no stage reaches into another's
internals. A module imports only modules of a lower layer (or, inside the rules and summary packages, its
own package's base). Imports under TYPE_CHECKING are types only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "perfxl"

# Lowest first. Read a row as: "may import anything above it".
LAYERS = [
    {"contract", "domain", "inbox", "limits", "problems", "structure", "reader", "designed", "portal",
     "portal.auth", "cachekeys", "xmltext", "datajson", "processes"},  # facts and plain helpers; pools of workers
    {"errors", "values", "rounds"},
    {"files", "roster", "records", "reader.zipguard", "reader.xml", "reader.form", "reader.rawbook", "scoring",
     "identity", "comparison"},  # comparison: this year's targets against their past and peers (pure data)
    {"reader.cells"},  # the one cell decoder
    {"reader.parts", "reader.xls"},  # OOXML parts, .xls → a raw workbook
    {"reader.book"},  # a file → its format and raw workbook
    {"rules"},  # the rule registry; it loads its kind modules itself
    {"rules.adjust", "rules.arithmetic", "rules.indicators", "rules.monitor", "rules.selfeval", "rules.tables", "rules.text"},
    {"spec"},  # 1. spec: Jinja → YAML → frozen model
    {"formparts", "sheetxml", "xlsxsafe"},  # what every generated form carries, whoever writes it; summary sheet
    # XML; xlsxwriter writing every text as text
    {"sheetprint"},  # how a sheet edited with openpyxl prints (annotated copies, designed forms)
    {"designed.form", "manifest", "annotation"},  # generate from an Excel design; what generating hands out; an
    # annotated copy's own sheets  # 2. generate, for a template designed in Excel; what generating hands out
    {"reader.recognise", "reader.names", "generator", "fill", "ledger", "library"},  # 2. generate; which form,
    # where; the indicator library's workbook
    {"prefilled"},  # 2. generate: prefilled forms patched from a master
    {"read", "issued", "references"},  # 3. read: the stage's entry point; the record of what follow-up forms were issued with
    {"validator"},  # 4. validate
    {"pipeline", "report", "summary.base"},  # one file end to end; 7. report
    {"summary.about", "summary.adjust", "summary.budgets", "summary.history", "summary.comparison", "summary.changes", "summary.indicators", "summary.problems",
     "summary.projects", "summary.monitor", "summary.review", "summary.selfeval", "summary.status"},  # 6. summary tables, one module per sheet
    {"summary.cover"},
    {"summary"},
    {"returns"},
    {"versions"},  # the versions of a project's targets: adjustments the bureau decided, in the declaration's ledger  # 7. the return package (annotated copies and notices) of a review round
    {"merging.options"},  # 5. merge: what it is asked and what it hands back
    {"merging.worker", "merging.guard", "merging.versions"},  # a file read and checked; outputs; which version counts
    {"merging.rollup", "merging.kept", "merging.render_ahead", "history"},  # history: earlier years' ledgers  # lower levels; the ledger's keeping; rendering ahead
    {"merging.run", "followup", "designed.importer"},  # the merge's steps; follow-up forms from a ledger
    {"merging", "handout"},  # the merge's entry; what a round hands out (blank or prefilled forms)
    {"portal.store"},  # the portal's uploads, checked by the merge's workers, in the merge's ledger
    {"api", "demo", "portal.app"},  # front ends
    {"cli"},
    {"__main__"},
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[tuple[str, str]]:
    """(module, name) pairs this file imports from perfxl at run time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, node.module] if node.module else base)
            elif (node.module or "").startswith("perfxl"):
                module = node.module.removeprefix("perfxl").lstrip(".")
            else:
                continue
            for alias in node.names:
                found.add((module, alias.name))
        elif isinstance(node, ast.Import):
            found |= {(a.name.removeprefix("perfxl").lstrip("."), "") for a in node.names if a.name.startswith("perfxl")}
    return found


def test_every_module_has_a_layer():
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")} - {""}
    assert sorted(modules - set(LAYER)) == [], "place new modules in LAYERS"


def test_imports_flow_one_way():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        own = _module_name(path)
        if own == "":
            continue  # perfxl/__init__.py: the lazy public API, loaded on first use
        for module, name in _imports(path):
            target = module if f"{module}.{name}" not in LAYER else f"{module}.{name}"
            if target == "" and name == "__version__":
                continue
            if target in LAYER and LAYER[target] >= LAYER[own]:
                wrong.append(f"{own} → {target}")
    assert wrong == []


def test_no_module_imports_another_modules_private_names():
    private = [f"{_module_name(p)} imports {m}.{n}" for p in PACKAGE.rglob("*.py") for m, n in _imports(p)
               if n.startswith("_") and n != "__version__"]
    assert private == []
