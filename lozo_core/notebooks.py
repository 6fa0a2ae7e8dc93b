"""Execute the jupytext notebooks end to end into executed .ipynb and HTML.

``python -m lozo_core.notebooks --out build/notebooks [--smoke] [NAME ...]`` runs every
``notebooks/NN_*.py`` (or the named ones) with the notebook folder as working directory and
writes ``NAME.ipynb`` and ``NAME.html``. A failing cell fails the run; the partly executed
notebook is still written, so the error can be read in context.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter

from lozo_core.provenance import REPO_ROOT, SMOKE_ENV

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
DATA_DIR = REPO_ROOT / "data"
# An executed notebook is read, not watched: no progress bars (ours, transformers', the hub's),
# which in a kernel with ipywidgets would be widgets whose state a static page cannot show.
QUIET_BARS = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The notebooks in run order, or those whose file stem starts with one of ``names``."""
    paths = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    if not names:
        return paths
    chosen = [p for p in paths if any(p.stem.startswith(n) for n in names)]
    unknown = [n for n in names if not any(p.stem.startswith(n) for p in paths)]
    if unknown:
        known = ", ".join(p.stem for p in paths)
        raise ValueError(f"unknown notebook {unknown[0]!r}; expected one of: {known}")
    return chosen


def _kernel_logging_reads(log: Path, root: Path, profile: Path) -> dict[str, str]:
    """Environment for a kernel that runs :func:`lozo_core.reads.log_reads` at start (an IPython
    startup file in the fresh ``profile``)."""
    startup = profile / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-log-reads.py").write_text(
        "from pathlib import Path\n"
        "from lozo_core.reads import log_reads\n"
        f"log_reads(Path({str(log)!r}), Path({str(root)!r}))\n"
    )
    return {"IPYTHONDIR": str(profile)}


def execute(
    path: Path,
    out_dir: Path,
    *,
    smoke: bool,
    timeout: int = 3600,
    reads: Path | None = None,
    data: Path = DATA_DIR,
) -> Path:
    """Run one jupytext notebook; write ``out_dir/STEM.ipynb`` and ``.html``; return the ipynb.
    With ``reads``, the kernel appends what it opens and lists under ``data`` to that file
    (:func:`lozo_core.reads.log_reads`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(path)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=False,
    )
    target = out_dir / f"{path.stem}.ipynb"
    env = os.environ | QUIET_BARS | {SMOKE_ENV: "1" if smoke else "0"}
    with tempfile.TemporaryDirectory(prefix="lozo-ipython-") as profile:
        if reads is not None:
            env |= _kernel_logging_reads(reads, data, Path(profile))
        try:
            client.execute(env=env)
        finally:
            nbformat.write(notebook, target)
            html, _ = HTMLExporter().from_notebook_node(notebook)
            target.with_suffix(".html").write_text(html, encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook stems or prefixes (default: all)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "notebooks")
    parser.add_argument("--smoke", action="store_true", help=f"smoke size ({SMOKE_ENV}=1)")
    args = parser.parse_args(argv)
    try:
        paths = notebook_paths(args.names)
    except ValueError as err:
        parser.error(str(err))
    failed = []
    for path in paths:
        start = time.perf_counter()
        print(f"running {path.relative_to(REPO_ROOT)} ...", flush=True)
        try:
            target = execute(path, args.out, smoke=args.smoke)
            print(f"  done in {time.perf_counter() - start:.0f} s -> {target}", flush=True)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            failed.append(path.stem)
            print(f"  FAILED after {time.perf_counter() - start:.0f} s:\n{err}", file=sys.stderr)
    out = args.out.resolve()
    print(f"\nexecuted notebooks (.ipynb and .html): {out}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
