"""Distributed data parallel helpers: re-launch under torchrun, init, gather.

``oacl pretrain`` with ``gpus``/``--nproc`` > 1 re-executes itself as
``python -m torch.distributed.run --standalone --nproc-per-node N -m oacl.cli pretrain ...``
(one process per GPU, NCCL; or gloo processes on CPU). A child process recognises
itself by the ``WORLD_SIZE`` variable torchrun sets and does not launch again.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import torch
import torch.distributed as tdist

log = logging.getLogger(__name__)


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def is_dist() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    return tdist.get_rank() if is_dist() else 0


def world() -> int:
    return tdist.get_world_size() if is_dist() else 1


def check_gpus(n: int) -> None:
    have = torch.cuda.device_count()
    if have < n:
        raise ValueError(f"{n} GPUs requested but torch.cuda.device_count() is {have}")


def relaunch(argv: list[str], nproc: int) -> int:
    """Run ``oacl <argv>`` as ``nproc`` torchrun processes; return their exit code."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "oacl.cli",
        *argv,
    ]
    log.info("launching %d processes: %s", nproc, " ".join(cmd))
    return subprocess.call(cmd)


def init(device_type: str) -> tuple[int, int, int]:
    """Join the process group torchrun set up; returns (rank, world, local_rank)."""
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return 0, 1, 0
    local = int(os.environ["LOCAL_RANK"])
    if not is_dist():
        if device_type == "cuda":
            torch.cuda.set_device(local)
        tdist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return rank(), world(), local


def cleanup() -> None:
    if is_dist():
        tdist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        tdist.barrier()


@torch.no_grad()
def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 in rank order (no gradient)."""
    if not is_dist():
        return x
    parts = [torch.empty_like(x) for _ in range(world())]
    tdist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce_mean(value: float, device) -> float:
    if not is_dist():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    tdist.all_reduce(t)
    return t.item() / world()


def cpu_count() -> int:
    """CPUs this process may use: SLURM_CPUS_PER_TASK, else the CPU affinity."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    return int(cpus) if cpus else len(os.sched_getaffinity(0))


def default_workers(requested: int | None, world_size: int) -> int:
    """Data loader workers per process: ``requested`` if set, else from the CPUs we own.

    SLURM_CPUS_PER_TASK (or the CPU affinity) is shared by the local processes; one
    CPU per process is kept for the training loop itself.
    """
    if requested is not None:
        return int(requested)
    return max(0, cpu_count() // max(1, world_size) - 1)
