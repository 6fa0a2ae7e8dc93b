r"""Data parallelism on ``torch.distributed``: only a zeroth-order step's scalars cross the wire.

With :math:`N` processes, process :math:`i` holds an equal shard :math:`S_i` of the global batch
:math:`S` (a contiguous slice, :func:`shard`), so the batch loss is the mean of the shards'
losses, :math:`f = \frac1N\sum_i f_i`. A zeroth-order step regenerates its perturbation from the
run seed on every process (the streams are shared), measures :math:`f_{i,\pm}` on its shard, and
all-reduces them (:func:`reduce_mean`): every process then holds the global :math:`f_\pm`, applies
the identical update, and records the global scalars, so a run's trajectory replays — and a run
resumes — at any world size. One step moves :math:`2q` float64 values per block (16 bytes for
MeZO or LOZO with ``q = 1``); first-order data parallelism
(:class:`~torch.nn.parallel.DistributedDataParallel`, :func:`data_parallel`) all-reduces every
gradient, 4 bytes per parameter.

Scale out with torch.distributed
--------------------------------
One machine, ``N`` processes (gloo on CPU, NCCL when ``--device cuda``; each process then uses the
GPU of its ``LOCAL_RANK``)::

    torchrun --standalone --nproc-per-node N -m lozo_core.train --optimizer lozo --out runs/r

Several machines: run the same command on each, with a rendezvous every node can reach (the
c10d backend hosts it on the given node; ranks are assigned by the rendezvous)::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-id job1 --rdzv-backend c10d \
        --rdzv-endpoint node0.example.com:29500 -m lozo_core.train --optimizer lozo --out runs/r

(or the static form ``--nnodes 2 --node-rank K --master-addr node0 --master-port 29500`` with
``K = 0, 1`` on the two nodes). ``--batch-size`` is the global batch and must divide by the world
size; rank 0 alone writes the run folder, and ``--resume`` needs that folder on a filesystem every
node sees (a process that finds another step than rank 0's stops with an error).

What to expect: communication stays :math:`O(q)` scalars per step, whatever the model size, so
the network is never the bottleneck; the forward passes split by :math:`N` (each process runs
its shard), while drawing the perturbation and writing the update are repeated on every process
(for MeZO, drawing :math:`z` for every weight is a large share of a CPU step; LOZO's low-rank draws
are small). Evaluation runs on rank 0 alone, so its numbers equal a single process's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True when torchrun (``python -m torch.distributed.run``) started this process."""
    return all(key in os.environ for key in TORCHRUN_ENV)


@contextmanager
def process_group_from_env(device: str = "cpu") -> Iterator[int]:
    """Inside, this process belongs to the process group torchrun described in the environment
    (gloo on CPU, NCCL on CUDA); yields the world size (1 outside torchrun). A group that is
    already initialized is used as it is and left alone."""
    if dist.is_initialized() or not launched_by_torchrun():
        yield world_size()
        return
    if device.startswith("cuda"):
        if device != "cuda":
            raise ValueError(
                f"--device {device!r}: under torchrun each process uses the GPU of its "
                "LOCAL_RANK; expected 'cuda'"
            )
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        yield world_size()
    finally:
        dist.destroy_process_group()


def default_group() -> dist.ProcessGroup | None:
    """The default process group if one is initialized with more than one process, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


def rank(group: dist.ProcessGroup | None = None) -> int:
    """This process's rank in ``group`` (the default group); 0 without torch.distributed."""
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


def world_size(group: dist.ProcessGroup | None = None) -> int:
    """Processes in ``group`` (the default group); 1 without torch.distributed."""
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def shard(global_batch: int, group: dist.ProcessGroup | None = None) -> slice:
    """The contiguous slice of a global batch of ``global_batch`` examples this process holds.

    Shards are equal, so the mean of the shards' mean losses is the batch's mean loss; a batch
    that does not divide by the world size is refused."""
    n = world_size(group)
    if global_batch % n:
        raise ValueError(
            f"global batch {global_batch} does not divide by the world size {n}: every process "
            "needs an equal shard for the mean of the shards' losses to be the batch loss; use "
            f"a batch that is a multiple of {n}"
        )
    size = global_batch // n
    return slice(rank(group) * size, (rank(group) + 1) * size)


@dataclass
class Traffic:
    """What this process handed to all-reduce: payload bytes (elements × element size) and calls.

    On a ring all-reduce each process sends and receives about :math:`2(N-1)/N` times the
    payload."""

    bytes: int = 0
    calls: int = 0


_counters: list[Traffic] = []


@contextmanager
def count_traffic() -> Iterator[Traffic]:
    """Count the all-reduce payload of :func:`reduce_mean`, :func:`reduce_mean_` and
    :func:`data_parallel` models inside the block."""
    traffic = Traffic()
    _counters.append(traffic)
    try:
        yield traffic
    finally:
        _counters[:] = [c for c in _counters if c is not traffic]


def _record(tensor: Tensor) -> None:
    for traffic in _counters:
        traffic.bytes += tensor.numel() * tensor.element_size()
        traffic.calls += 1


def _device(group: dist.ProcessGroup) -> torch.device:
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_mean(values: list[float], group: dist.ProcessGroup | None) -> list[float]:
    r"""The mean of ``values`` over the processes of ``group``, in float64, in one all-reduce
    (:math:`8\cdot\text{len(values)}` bytes); ``values`` unchanged when ``group`` is None.

    Every process receives the same bits (the all-reduce reduces each element once and
    distributes the result), so processes that apply the same update from them stay identical."""
    if group is None:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_device(group))
    reduce_mean_([tensor], group)
    return tensor.tolist()


def reduce_mean_(tensors: list[Tensor], group: dist.ProcessGroup | None) -> None:
    """In place: each tensor becomes its mean over the processes of ``group`` (None: unchanged)."""
    if group is None:
        return
    for tensor in tensors:
        _record(tensor)
        dist.all_reduce(tensor, group=group)
        tensor.div_(dist.get_world_size(group))


def _counted_allreduce(group, bucket):
    _record(bucket.buffer())
    return allreduce_hook(group, bucket)


def data_parallel(model: nn.Module, group: dist.ProcessGroup | None) -> nn.Module:
    """``model`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` over ``group``
    (gradients averaged by bucketed all-reduce, counted by :func:`count_traffic`); ``model`` itself
    when ``group`` is None."""
    if group is None:
        return model
    devices = [torch.cuda.current_device()] if dist.get_backend(group) == "nccl" else None
    wrapped = nn.parallel.DistributedDataParallel(model, device_ids=devices, process_group=group)
    wrapped.register_comm_hook(group, _counted_allreduce)
    return wrapped


def check_agree(name: str, value: int, group: dist.ProcessGroup | None) -> None:
    """Raise ``ValueError`` unless every process of ``group`` holds the same ``value``."""
    if group is None:
        return
    values = [None] * dist.get_world_size(group)
    dist.all_gather_object(values, value, group=group)
    if len(set(values)) > 1:
        raise ValueError(
            f"{name} differs across processes (by rank: {values}); every process must read the "
            "same run folder (put --out on a filesystem every node sees)"
        )
