"""A run stored as its trajectory: the config and the scalars each step measured, no tensors.

A zeroth-order step is a function of the run seed, the step number and the losses its queries
measured (:attr:`ZeroOrderOptimizer.last_record`), so the losses of every step — plus the
conservative rule's choices, or Forward-Grad's directional derivatives — rebuild the run
exactly: :func:`replay` applies them to a freshly loaded model without a forward pass.

File format (``trajectory.json``, plain JSON, opened without running code)::

    {"format": "lozo-trajectory/1", "config": {...}, "optimizer": {...}, "steps": N, "queries": Q,
     "dtype": "float32", "losses": "<base64 of N×Q×2 little-endian floats>",
     "choices": [...] (ZO-SGD-Cons only), "directional": "<base64 float64>" (Forward-Grad),
     "evals": [{"step": k, "validation_accuracy": …}, …], "times": [seconds per step…],
     "chunks": [{"start": k0, "end": k1, "machine": {...}, "train_time_s": …}, …]}

``optimizer`` holds the settings the optimizer was built with, code defaults included
(:func:`lozo_core.train.optimizer_settings`); ``chunks`` records which machine ran which steps:
a long run may cross machines.

Losses are stored as float32 when every value is one (a float32 model's losses are), else
float64: 8 bytes per step for a one-query run, about 11 kB per 1000 steps as base64.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lozo_core.provenance import same_cpu

FORMAT = "lozo-trajectory/1"
FILENAME = "trajectory.json"


def _encode(values: np.ndarray) -> str:
    return base64.b64encode(values.astype(values.dtype.newbyteorder("<")).tobytes()).decode()


def _decode(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<"))


@dataclass
class Trajectory:
    config: dict
    records: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    chunks: list[dict] = field(default_factory=list)
    optimizer: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.records)

    def training_losses(self) -> list[float]:
        r"""Per step, the mean of the losses its queries measured at the perturbed points
        :math:`\theta \pm \epsilon z`: the run's training-loss curve."""
        return [float(np.mean(record["losses"])) for record in self.records]

    def append(self, record: dict, seconds: float) -> None:
        if record["step"] != self.steps:
            raise ValueError(f"trajectory: got step {record['step']}, expected {self.steps}")
        self.records.append(record)
        self.times.append(round(seconds, 4))

    def chunk_times(self, cpu: dict | None = None) -> list[tuple[dict, list[float]]]:
        """Each chunk with its steps' seconds; only the chunks run on ``cpu`` (a
        :func:`lozo_core.provenance.cpu`, matched by :func:`~lozo_core.provenance.same_cpu`), if
        given."""
        return [
            (c, self.times[c["start"] : c["end"]])
            for c in self.chunks
            if cpu is None or same_cpu(c["machine"], cpu)
        ]

    def truncate(self, steps: int) -> None:
        """Keep the first ``steps`` steps, the evaluations up to them and the chunks that ran
        them (a chunk cut short ends at ``steps``)."""
        del self.records[steps:], self.times[steps:]
        self.evals = [e for e in self.evals if e["step"] <= steps]
        self.chunks = [c | {"end": min(c["end"], steps)} for c in self.chunks if c["start"] < steps]

    def to_json(self) -> dict:
        out = {"format": FORMAT, "config": self.config, "optimizer": self.optimizer}
        out |= {"steps": self.steps, "evals": self.evals}
        out["times"], out["chunks"] = self.times, self.chunks
        if not self.records:
            return out
        if "directional" in self.records[0]:
            out["directional"] = _encode(np.array([r["directional"] for r in self.records]))
            return out
        losses = np.array([r["losses"] for r in self.records], dtype=np.float64)
        narrow = losses.astype(np.float32)
        exact = np.array_equal(narrow.astype(np.float64), losses)
        out |= {
            "blocks": losses.shape[1],
            "queries": losses.shape[2],
            "dtype": "float32" if exact else "float64",
            "losses": _encode(narrow if exact else losses),
        }
        if any(c is not None for r in self.records for c in r["choices"]):
            out["choices"] = [r["choices"] for r in self.records]
        return out

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILENAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json()) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: Path) -> Trajectory:
        path = Path(folder) / FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"no {FILENAME} in {folder} (pass the --out folder of a run)")
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: format {data.get('format')!r}, expected {FORMAT!r}")
        n = data["steps"]
        if n == 0:
            records = []
        elif "directional" in data:
            values = _decode(data["directional"], "float64")
            records = [{"step": k, "directional": float(v)} for k, v in enumerate(values)]
        else:
            shape = (n, data["blocks"], data["queries"], 2)
            losses = _decode(data["losses"], data["dtype"]).astype(np.float64).reshape(shape)
            choices = data.get("choices") or [[None] * data["blocks"]] * n
            records = [
                {"step": k, "losses": losses[k].tolist(), "choices": list(choices[k])}
                for k in range(n)
            ]
        return cls(data["config"], records, data.get("evals", []), data.get("times", []),
                   data.get("chunks", []), data.get("optimizer", {}))  # fmt: skip


def replay(optimizer, records: list[dict]) -> None:
    """Apply recorded steps to ``optimizer`` (and so to its model), in order."""
    for record in records:
        optimizer.replay_step(record)
