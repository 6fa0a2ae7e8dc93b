"""What a process read under a folder, and whether that is still what it would read.

:func:`log_reads` makes a process log every file it opens and every folder it lists under a
root (Python's audit events); :func:`manifest` turns such a log into the files' hashes and the
listings of the folders involved; :func:`unchanged` says whether the tree still matches. The
book reuses an executed notebook while the data it read is :func:`unchanged`, so a campaign
writing new runs re-executes only the notebooks that read them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path


def log_reads(log: Path, root: Path) -> None:
    """From now on, append to ``log`` a line ``KIND\\tPATH`` (``file`` or ``folder``) for every
    file this process opens and every folder it lists under ``root``. A path only tested for
    existence raises no audit event: :func:`manifest` covers it through its folder's listing
    when that folder was read from."""
    handle, prefix = open(log, "a", encoding="utf-8"), str(root)  # noqa: SIM115

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


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def manifest(log: Path, root: Path) -> dict:
    """``{"files": {path: sha256}, "folders": {path: [names]}}`` (paths relative to ``root``) for
    the files in ``log`` that exist, and for every folder listed or read from, with its ancestors
    up to ``root``: a file added where the process looked changes a listing."""
    files, folders = set(), set()
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        kind, where = line.split("\t", 1)
        path = Path(where)
        if kind == "file" and path.is_file():
            files.add(path)
            path = path.parent
        while path.is_dir() and path.is_relative_to(root):
            folders.add(path)
            path = path.parent
    return {
        "files": {str(p.relative_to(root)): _sha256(p) for p in sorted(files)},
        "folders": {str(p.relative_to(root)): _listing(p) for p in sorted(folders)},
    }


def unchanged(recorded: dict, root: Path) -> bool:
    """Whether every file of a :func:`manifest` has the same bytes and every folder the same
    names."""
    for name, digest in recorded["files"].items():
        path = root / name
        if not path.is_file() or _sha256(path) != digest:
            return False
    return all(
        (root / name).is_dir() and _listing(root / name) == names
        for name, names in recorded["folders"].items()
    )
