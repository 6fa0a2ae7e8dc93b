"""Where a number came from: machine, software, run size, and the run's own settings.

Notebooks print :func:`banner` before each result; recorded runs store :func:`machine` in
their JSON. ``LOZO_SMOKE=1`` in the environment selects the smoke size used by the tests, and
``TQDM_DISABLE=1`` silences every :func:`progress_bar` (executed notebooks set both).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

SMOKE_ENV = "LOZO_SMOKE"
REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "data" / "results"


def heavy_lock() -> str:
    """The lock file a long CPU job holds while it computes (``$LOZO_HEAVY_LOCK``), so that the
    campaign, the recording scripts and the bench take turns on a 2-core machine."""
    return os.environ.get("LOZO_HEAVY_LOCK", "/tmp/lozo-heavy.lock")


def progress_bar(iterable, **options) -> tqdm:
    """``tqdm.auto.tqdm(iterable, **options)``: a widget in JupyterLab, text in a terminal, and
    nothing when ``TQDM_DISABLE=1`` — which tqdm's notebook bar ignores, and a static page of
    an executed notebook cannot show a widget."""
    if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true"):
        options["disable"] = True
    return tqdm(iterable, **options)


def is_smoke() -> bool:
    """True when ``LOZO_SMOKE`` is set to a non-empty value other than ``0``."""
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


def pick(full, smoke):
    """``smoke`` under ``LOZO_SMOKE=1``, else ``full``: the one switch between run sizes."""
    return smoke if is_smoke() else full


CODE = ("lozo_core", "scripts", "notebooks", "theory", "pyproject.toml", "Makefile")
"""What makes a result: a change here that is not committed marks the commit ``+dirty``."""


def git_commit() -> str:
    """The short commit of the checkout, ``+dirty`` when tracked code (:data:`CODE`, not the
    recorded data a running campaign writes) differs from it; ``unknown`` outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()  # fmt: skip

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", *CODE)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if changed else "")


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "sve", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
SIMD_NAMES = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("sve", "SVE"), ("asimd", "NEON"))


def parse_cpuinfo(text: str) -> dict:
    """CPU model and the :data:`CPU_FLAGS` it has, from ``/proc/cpuinfo``: x86's ``model name``
    and ``flags``; ARM's ``Features`` (``asimd`` = NEON, ``sve``, ``bf16``), whose model has no
    name there, only its implementer and part codes."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    if "model name" in fields:
        model = fields["model name"]
    elif "cpu part" in fields:
        model = f"ARM implementer {fields.get('cpu implementer', '?')} part {fields['cpu part']}"
    else:
        model = platform.machine()
    flags = (fields.get("flags") or fields.get("features") or "").split()
    return {"cpu_model": model, "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def _sysctl(key: str) -> str:
    return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5,
                          check=True).stdout.strip()  # fmt: skip


def cpu() -> dict:
    """CPU model and the flags that decide whether bf16 pays: from ``/proc/cpuinfo``
    (:func:`parse_cpuinfo`), or on macOS from ``sysctl`` (Apple silicon: NEON, and bf16 where
    ``FEAT_BF16`` is set)."""
    if platform.system() == "Darwin":
        try:
            model = _sysctl("machdep.cpu.brand_string")
            bf16 = platform.machine() == "arm64" and _sysctl("hw.optional.arm.FEAT_BF16") == "1"
        except (OSError, subprocess.SubprocessError):
            return {"cpu_model": platform.processor() or platform.machine(), "cpu_flags": []}
        neon = ["asimd"] if platform.machine() == "arm64" else []
        return {"cpu_model": model, "cpu_flags": neon + (["bf16"] if bf16 else [])}
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {"cpu_model": platform.processor() or platform.machine(), "cpu_flags": []}


def same_cpu(machine: dict, info: dict) -> bool:
    """Whether the recorded ``machine`` (:func:`machine`) has the CPU ``info`` names (:func:`cpu`:
    the same model and flags), so that its timings compare with that CPU's."""
    return all(machine.get(k) == info.get(k) for k in ("cpu_model", "cpu_flags"))


def cpu_slug(info: dict | None = None) -> str:
    """A file-name-safe name for a CPU (default this one): its model and its fastest bf16
    instruction, e.g. ``amd-epyc-avx512bf16`` or ``intel-r-xeon-r-processor-amxbf16``."""
    info = info or cpu()
    model = re.sub(r"[^a-z0-9]+", "-", info["cpu_model"].lower()).strip("-")
    bf16 = next((f for f in BF16_FLAGS if f in info["cpu_flags"]), "nobf16")
    return f"{model}-{bf16.replace('_', '')}"


def machine() -> dict:
    """A plain description of this machine and software stack."""
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **cpu(),
        "cpu_count": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return info


def cpu_line(machine: dict) -> str:
    """The machine in one phrase, with what decides bf16's speed: its SIMD and bf16 instructions."""
    if machine.get("gpu"):
        return f"{machine['gpu']}, torch {machine['torch']}"
    cpu = machine.get("cpu_model") or machine["processor"]
    if "cpu_flags" not in machine:
        return f"{cpu} x{machine['cpu_count']} (CPU flags not recorded), torch {machine['torch']}"
    flags = set(machine["cpu_flags"])
    bf16 = sorted(flags & set(BF16_FLAGS))
    simd = next(
        (name for flag, name in SIMD_NAMES if flag in flags),
        "no NEON" if machine.get("processor") in ("aarch64", "arm64", "arm") else "no AVX2",
    )
    hardware = f"bf16 in hardware: {', '.join(bf16)}" if bf16 else "no bf16 matrix instructions"
    return f"{cpu} x{machine['cpu_count']} ({simd}, {hardware}), torch {machine['torch']}"


def banner(**fields) -> None:
    """Print one provenance line: the given fields, then size, machine and software."""
    m = machine()
    where = m["gpu"] or f"{m['cpu_model']} x{m['cpu_count']} ({m['torch_threads']} threads)"
    parts = [f"{k}={v}" for k, v in fields.items()]
    parts += [
        f"size={'smoke' if is_smoke() else 'full'}",
        f"machine={where}",
        f"torch={m['torch']}",
        f"commit={m['git_commit']}",
    ]
    print("[provenance] " + " | ".join(parts))
