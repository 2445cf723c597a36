"""Every key and version under which perfxl keeps something between runs, in one place.

What is kept, and what makes a kept value stale:
- a checked form in the merge's spool and the portal (records): its shape, DATA_VERSION;
- a file's form data and status in the ledger: the reader and rules that made them, READER_VERSION;
- a form's kept check: the merge's settings (`settings_fingerprint`), the file's content and extension
  (`check_key`);
- what a form adds to the sheets (its part) and its rows' rendered segments: the settings, and
  RENDER_VERSION, which is the digest of the code that decides what a sheet keeps (every sheet's columns
  and kinds, the collectors, the renderer). Changing a sheet's columns, or how a row is rendered, gives new
  keys by itself: old parts cannot be reused, and nobody has to remember to bump a number.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import __version__

# A checked form as data (records.CheckedForm.to_data): lists in this order.
DATA_VERSION = 1

# Cached form data is only reused by the same reader: a new perfxl version reads files afresh.
# "-p2": problems carry parameters, not rendered text; "-p3": form data carries a follow-up form's declared
# rows; "-p4": those rows as lists, and the v2 declared sheet; "-p5": the stamp's round (perfxl.issued);
# "-p6": a number past values.NUMBER_LIMIT is no number (a check kept before took a 400-digit budget, which a
# crashed run may have kept); "-p7": a file's form data and its status each say the read settings they came
# from (ledger files.form_reader): a perfxl before it would take the other's as its own. Caches of an older
# shape are read afresh.
READER_VERSION = f"perfxl-{__version__}-p7"

# The shape of a kept part's JSON (summary.form_part): what its list holds, checked when it is read back.
PART_VERSION = 1

# The code that decides what a form adds to the sheets and how their rows are rendered, relative to the
# package: the summary package (every sheet's columns and kinds, the collectors), the records it reads, the
# report and sheet XML writers, and what the writer takes from elsewhere: how a text is escaped (xmltext),
# how a long one is cut (contract) and a cell's name (spec).
RENDER_SOURCES = ("summary", "records.py", "report.py", "sheetxml.py", "xmltext.py", "contract.py", "spec.py")


def code_digest(package: Path, sources: tuple[str, ...] = RENDER_SOURCES) -> str:
    """The digest of the source files under `package` named by `sources` (a folder: its .py files), with
    line endings as written on any system. A file that cannot be read (a frozen build) counts by its name and
    perfxl's version, which the settings' fingerprint holds too."""
    h = hashlib.sha256()
    for source in sources:
        top = package / source
        files = sorted(top.rglob("*.py")) if top.is_dir() else [top]
        for path in files:
            name = path.relative_to(package).as_posix()
            try:
                text = path.read_bytes().replace(b"\r\n", b"\n")
            except OSError:
                text = f"unreadable {__version__}".encode()
            h.update(f"{name}|{len(text)}|".encode("utf-8", "surrogateescape"))
            h.update(text)
    return h.hexdigest()[:16]


RENDER_VERSION = f"r4-{code_digest(Path(__file__).resolve().parent)}"


def check_key(fingerprint: str, sha: str, path: str) -> str:
    """A form's kept check: its content under the merge's settings, and its name's extension, which the
    reader compares with the content's format (a notice, so a warning in the check)."""
    return f"check|{fingerprint}|{sha}|{ascii(os.path.splitext(path)[1].lower())}"  # a name not UTF-8: ASCII all the same


def read_key(template: str | None, year: int | None, templates_dir) -> str:
    """What a file's form data as the ledger stores it was read under: the reader (perfxl's version) and the
    settings the reader itself follows, the template and year a form without its stamp is read as (and a
    stamp of another template noted against) and the templates folder (its specs, and the titles a form
    is recognised by). Form data read under other settings is not reused: the file is read again. Without
    any, READER_VERSION alone, as every ledger stored it before."""
    if template is None and year is None and templates_dir is None:
        return READER_VERSION
    h = hashlib.sha256(repr((template, year)).encode("utf-8"))
    if templates_dir is not None:
        _add_folder(h, Path(templates_dir))
    return f"{READER_VERSION}|{h.hexdigest()[:16]}"


def settings_fingerprint(options) -> str:
    """The settings a form's check and its summary rows depend on (a merging.MergeOptions), besides its
    content and its unit's roster entry: the reader and rules (perfxl's version), what the merge expects,
    whether there is a roster, and the templates folder's files. (A unit's entry is checked per form, so
    adding a unit to the roster on deadline day does not make every other form be checked and rendered
    again.)"""
    h = hashlib.sha256(repr((READER_VERSION, options.template, options.year, options.lang,
                             options.roster is not None, options.check_options().issued)).encode("utf-8"))
    if options.templates_dir is not None:
        _add_folder(h, Path(options.templates_dir))
    return h.hexdigest()


def _add_folder(h, folder: Path) -> None:
    """A templates folder into a digest, by its files' names, sizes and times."""
    for path in sorted(folder.rglob("*")):
        try:
            st = path.stat()
        except OSError:
            continue
        h.update(f"{path.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}|".encode("utf-8", "surrogateescape"))
