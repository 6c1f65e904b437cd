"""Sharded work across 2 gloo processes comes back whole and in order.
Run: `.venv/bin/python -m pytest tests/test_distributed.py`."""

from __future__ import annotations

import os
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from competition.harness import distributed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, items: list[str], queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    distributed.ensure_process_group()
    seen: list[str] = []

    def work(batch: list[str]) -> list[str]:
        seen.extend(batch)
        return [f"{item}:{distributed.rank()}" for item in batch]

    results = distributed.distributed_map(work, items)
    made_on = distributed.broadcast_from_main(lambda: f"made by rank {distributed.rank()}")
    queue.put((rank, seen, results, distributed.is_main_process(), made_on))
    dist.destroy_process_group()


@pytest.mark.integration
def test_two_ranks_split_the_work_and_gather_it_in_order() -> None:
    items = [f"fname_{i}" for i in range(7)]
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_worker, args=(free_port(), items, queue), nprocs=2, start_method="spawn")
    reports = sorted(queue.get() for _ in range(2))
    (_, seen0, results0, main0, made0), (_, seen1, results1, main1, made1) = reports
    assert made0 == made1 == "made by rank 0"
    assert sorted(seen0 + seen1) == sorted(items) and not set(seen0) & set(seen1)  # each item worked once
    assert results0 == results1  # every rank holds the full, ordered result
    assert [r.split(":")[0] for r in results0] == items
    assert {r.split(":")[1] for r in results0} == {"0", "1"}
    assert (main0, main1) == (True, False)


def test_single_process_is_a_plain_call() -> None:
    assert distributed.world_size() == 1 and distributed.is_main_process()
    assert distributed.distributed_map(lambda xs: [x * 2 for x in xs], [1, 2, 3]) == [2, 4, 6]
    assert distributed.shard_indices(5, 1, 2) == [1, 3]
