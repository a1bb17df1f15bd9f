"""Work sharing across processes (accelerate / torch.distributed), in one place.

Every process holds the whole dataset and computes the same allocation from gathered
statistics; work items (a prompt's samples, a prompt's gradient norms) go to processes by
longest-processing-time-first, which keeps the largest and smallest process loads within one
item's size of each other. Results are gathered back in item order, so every process continues
with identical data. Collectives are called by every process with the same sequence of calls
whatever its share (an empty share still gathers), so uneven budgets cannot hang a run.
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import gather_object

T = TypeVar("T")


def lpt_assign(loads: Sequence[float], workers: int) -> list[int]:
    """Owner of each item: largest loads first, each to the least-loaded worker (ties: the lower
    worker index, then the lower item index). max load - min load <= max item load."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    owners = [0] * len(loads)
    heap = [(0.0, w) for w in range(workers)]
    for item in sorted(range(len(loads)), key=lambda i: (-loads[i], i)):
        load, worker = heapq.heappop(heap)
        owners[item] = worker
        heapq.heappush(heap, (load + loads[item], worker))
    return owners


def worker_loads(loads: Sequence[float], owners: Sequence[int], workers: int) -> list[float]:
    totals = [0.0] * workers
    for load, owner in zip(loads, owners, strict=True):
        totals[owner] += load
    return totals


def run_shared(
    accelerator: Accelerator,
    loads: Sequence[float],
    work: Callable[[list[int]], list[T]],
) -> list[T]:
    """Run ``work(items)`` on this process's share of the items (chosen by LPT on loads) and
    return every item's result, in item order, on every process."""
    world = accelerator.num_processes
    if world == 1:
        return work(list(range(len(loads))))
    owners = lpt_assign(loads, world)
    mine = [i for i, owner in enumerate(owners) if owner == accelerator.process_index]
    local = work(mine)
    if len(local) != len(mine):
        raise RuntimeError(f"work returned {len(local)} results for {len(mine)} items")
    gathered = gather_object([(i, result) for i, result in zip(mine, local, strict=True)])
    results: list = [None] * len(loads)
    for i, result in gathered:
        results[i] = result
    return results


def gather_all(accelerator: Accelerator, value: T) -> list[T]:
    """Every process's value, in process order, on every process."""
    if accelerator.num_processes == 1:
        return [value]
    return gather_object([value])


def contiguous_share(count: int, rank: int, world: int) -> range:
    """This process's slice of ``count`` items split into ``world`` near-equal runs."""
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def sum_across(accelerator: Accelerator, values: dict[str, float]) -> dict[str, float]:
    """Sum each metric over processes (keys must be the same on every process)."""
    if accelerator.num_processes == 1:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], device=accelerator.device)
    summed = accelerator.reduce(tensor, reduction="sum")
    return dict(zip(keys, summed.tolist(), strict=True))


def check_identical(accelerator: Accelerator, value: object, what: str) -> None:
    """Raise when processes disagree on ``value`` (e.g. the allocation)."""
    if accelerator.num_processes == 1:
        return
    values = gather_all(accelerator, value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"processes disagree on {what}: {values}")


def leave_process_group() -> bool:
    """Under torchrun / accelerate launch: free what still references collectives, wait for
    every process, then close the group, so no process exits while another still talks to it.
    True when it did: the caller then exits without interpreter finalization, during which
    Gloo's worker threads can abort a process whose work is done ("terminate called without an
    active exception", seen on CPU under FSDP2; pytorch/pytorch#179291)."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    return True
