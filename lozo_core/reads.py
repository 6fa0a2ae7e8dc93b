"""What a process read under a folder, and whether that is still what it would read.

:func:`log_reads` makes a process log every file it opens and every folder it lists under a
root (Python's audit events: files opened by Python code, not by native libraries or other
processes); :func:`manifest` turns such a log into the files' hashes and the names under the
folders involved; :func:`unchanged` says whether the tree still matches, and
:func:`changed_since` whether it moved while the process ran. The book reuses an executed
notebook while the data it read is :func:`unchanged`, so a campaign writing new runs
re-executes only the notebooks that read them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

HEADER = "root"


def log_reads(log: Path, root: Path) -> None:
    """From now on, append to ``log`` a line ``KIND\\tPATH`` (``file`` or ``folder``) for every
    file this process opens and every folder it lists under ``root``, after a ``root`` header
    line that tells :func:`manifest` the logging ran. A path only tested for existence (as
    ``Path.glob`` tests a pattern's last literal part) raises no audit event: :func:`manifest`
    covers it through the names under the folders listed."""
    handle, prefix = open(log, "a", encoding="utf-8"), str(root)  # noqa: SIM115
    handle.write(f"{HEADER}\t{prefix}\n")
    handle.flush()

    def hook(event: str, args: tuple) -> None:
        if event not in ("open", "os.listdir", "os.scandir") or isinstance(args[0], int):
            return
        where = os.path.abspath(os.fsdecode(args[0] if args[0] is not None else "."))
        if where == prefix or where.startswith(prefix + os.sep):
            handle.write(f"{'file' if event == 'open' else 'folder'}\t{where}\n")
            handle.flush()

    sys.addaudithook(hook)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _names(folder: Path, recursive: bool) -> list[str]:
    """The names in ``folder`` (every path below it if ``recursive``), atomic-write ``.tmp``
    files aside."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(p.relative_to(folder)) for p in found if p.suffix != ".tmp")


def manifest(log: Path, root: Path) -> dict:
    """From a :func:`log_reads` log, with paths relative to ``root``: ``files`` (each opened file
    that exists, and its sha256), ``trees`` (each listed folder, and every path below it: a file
    that appears anywhere under a folder the process searched changes it) and ``folders`` (the
    folders holding what was read, up to ``root``, and their names). ``ValueError`` if the log
    lacks its header: the process never logged, and an empty manifest would match forever."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    if not lines or lines[0] != f"{HEADER}\t{root}":
        raise ValueError(
            f"{log}: no read log for {root} (expected a first line {HEADER!r} TAB root); "
            "the kernel did not run lozo_core.reads.log_reads"
        )
    files, trees, folders = set(), set(), set()
    for line in lines[1:]:
        kind, where = line.split("\t", 1)
        path = Path(where)
        if kind == "file" and path.is_file():
            files.add(path)
        elif kind == "folder" and path.is_dir():
            trees.add(path)
        path = path.parent
        while path.is_dir() and path.is_relative_to(root):
            folders.add(path)
            path = path.parent
    return {
        "files": {str(p.relative_to(root)): _sha256(p) for p in sorted(files)},
        "trees": {str(p.relative_to(root)): _names(p, True) for p in sorted(trees)},
        "folders": {str(p.relative_to(root)): _names(p, False) for p in sorted(folders)},
    }


def unchanged(recorded: dict, root: Path) -> bool:
    """Whether every file of a :func:`manifest` has the same bytes, and every tree and folder the
    same names."""
    for name, digest in recorded["files"].items():
        path = root / name
        if not path.is_file() or _sha256(path) != digest:
            return False
    for key, recursive in (("trees", True), ("folders", False)):
        for name, names in recorded[key].items():
            if not (root / name).is_dir() or _names(root / name, recursive) != names:
                return False
    return True


def changed_since(recorded: dict, root: Path, start: float) -> bool:
    """Whether a file or folder of a :func:`manifest` was modified after ``start`` (a
    ``time.time()``): then what the process read may differ from what the manifest holds."""
    paths = [root / name for key in ("files", "folders") for name in recorded[key]]
    for name, below in recorded["trees"].items():
        paths += [root / name, *(root / name / p for p in below)]
    return any(p.exists() and p.stat().st_mtime > start for p in paths)
