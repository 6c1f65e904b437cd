"""Multi-process runs (torchrun DDP, one process per GPU; gloo on CPU): rank facts, sharded work gathered back in
order, and main-process-only writes.

Under a single process every helper is a no-op, so the tracks call them unconditionally.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

Item = TypeVar("Item")
Result = TypeVar("Result")


def world_size() -> int:
    """Number of processes in the run (1 when not launched by torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its host: the GPU it owns."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Only rank 0 writes files."""
    return rank() == 0


def ensure_process_group() -> None:
    """Join the process group torchrun describes (nccl on GPUs, gloo on CPU); no-op for one process."""
    if world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=backend)


def end_multi_process_run() -> None:
    """Under torchrun, once this rank's work is written: wait for every rank, leave the process group, flush, and end
    the process with status 0, skipping the interpreter's teardown (`os._exit`). No-op for one process.

    Two CI runs saw rank 1 of a finished gloo run abort at exit ("terminate called without an active exception"),
    the second one after barrier and destroy_process_group, so torchrun failed a complete run. The C++ teardown at
    interpreter exit is the step left; the cause did not reproduce here (25 runs of the track, 44 of bare gloo).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    barrier()
    dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0 has written a file the others read)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_from_main(make: Callable[[], Result]) -> Result:
    """Call `make` on rank 0 only and return its value on every rank (e.g. the run folder rank 0 created)."""
    if world_size() == 1 or not dist.is_initialized():
        return make()
    box = [make() if is_main_process() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def shard_indices(count: int, shard: int, shards: int) -> list[int]:
    """Round-robin share of `count` items; over length-sorted items this balances the work between ranks."""
    return list(range(shard, count, shards))


def distributed_map(work: Callable[[list[Item]], list[Result]], items: Sequence[Item]) -> list[Result]:
    """Run `work` on this rank's share of `items` and return every result on every rank, in input order.

    Each input index appears exactly once in the result; a missing or duplicated one is an error, never a drop.
    """
    shards = world_size()
    if shards == 1 or not dist.is_initialized():
        return work(list(items))
    mine = shard_indices(len(items), rank(), shards)
    local_results = work([items[i] for i in mine])
    if len(local_results) != len(mine):
        raise RuntimeError(f"rank {rank()}: {len(mine)} items but {len(local_results)} results")
    gathered: list[list[tuple[int, Result]] | None] = [None] * shards
    dist.all_gather_object(gathered, list(zip(mine, local_results)))
    merged: dict[int, Result] = {}
    for part in gathered:
        for index, result in part or []:
            if index in merged:
                raise RuntimeError(f"item {index} was produced by two ranks")
            merged[index] = result
    missing = [i for i in range(len(items)) if i not in merged]
    if missing:
        raise RuntimeError(f"items {missing[:10]} were produced by no rank")
    return [merged[i] for i in range(len(items))]
