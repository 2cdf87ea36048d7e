"""Data parallelism with torch.distributed: one process per device, launched by ``torchrun``.

    torchrun --nproc_per_node 2 -m cptpp.cli train --dataset ml-1m-implicit --recommender lightgcn

Every rank holds the full model and the same seed. The loop averages gradients across ranks
after each backward pass (one bucketed all-reduce: gloo on CPU, NCCL on CUDA), so parameters stay
identical on every rank; tasks shard each global batch by rank (see
:func:`cptpp.recsys.sampling.bpr_batches`). Rank 0 evaluates, writes files and shows progress;
its metrics are broadcast so every rank makes the same early-stopping decision.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def setup_from_env() -> bool:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); returns whether distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return True


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """All-reduce the mean of every gradient across ranks, as one flat bucket."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or world_size() == 1:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
