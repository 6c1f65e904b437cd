"""Out-of-memory recovery both tracks share: a training micro-batch or a generation batch that runs out of GPU memory
is run again in row pieces (more accumulation, the same optimizer step; the same summaries), later batches keep the
smaller pieces, every fallback is logged and recorded for `run.json`, and a single row that still does not fit ends
the run with one clear line naming the peak memory and what to set.

torch is imported inside the functions, so data-only users of `competition` stay light.
"""

from __future__ import annotations

import gc
import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, TypeVar

from competition.rules.errors import ConfigError, warn

log = logging.getLogger(__name__)

T = TypeVar("T")
_recordings: list[list[dict[str, Any]]] = []  # the open `recording()` lists, each gets every fallback


class OutOfMemory(ConfigError):
    """One row of a batch does not fit in the GPU's memory: the settings must change (the CLI exits 2)."""


@contextmanager
def recording() -> Iterator[list[dict[str, Any]]]:
    """A list that receives every fallback recorded inside the block (a run's `oom_fallbacks`)."""
    fallbacks: list[dict[str, Any]] = []
    _recordings.append(fallbacks)
    try:
        yield fallbacks
    finally:
        _recordings.remove(fallbacks)


def record_fallback(stage: str, **fields: Any) -> dict[str, Any]:
    """Log a fallback as a warning line and add it to every open `recording()`."""
    entry = {"stage": stage, **fields}
    warn(f"out of memory in {stage}: " + ", ".join(f"{key} {value}" for key, value in fields.items())
         + f"; running the batch in {fields.get('split')} pieces from now on")
    for fallbacks in _recordings:
        fallbacks.append(entry)
    return entry


def free_memory() -> None:
    """Give a failed attempt's tensors back (to the driver too, so a fragmented cache does not fail again)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_text() -> str:
    """`peak 21.3 GiB allocated of 23.6 GiB` on CUDA (the peak of this process, the card's total)."""
    import torch

    if not torch.cuda.is_available():
        return "no GPU"
    peak = torch.cuda.max_memory_allocated() / 2**30
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / 2**30
    return f"peak {peak:.1f} GiB allocated of {total:.1f} GiB"


def row_slices(rows: int, parts: int) -> list[slice]:
    """`rows` cut into min(parts, rows) contiguous slices of near-equal size, in order."""
    parts = max(1, min(parts, rows))
    size, extra = divmod(rows, parts)
    slices, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        slices.append(slice(start, end))
        start = end
    return slices


def batch_rows(batch: Mapping[str, Any]) -> int:
    """Rows of a collated batch: its `input_ids`' first dimension, or for a packed one (one sequence) the number of
    rows packed into it (where its `position_ids` restart at 0)."""
    rows = int(batch["input_ids"].shape[0])
    positions = batch.get("position_ids")
    return int((positions == 0).sum()) if rows == 1 and positions is not None else rows


def split_rows(batch: Mapping[str, Any], parts: int) -> list[dict[str, Any]]:
    """A collated batch cut by rows into min(parts, rows) pieces: each tensor of rows (two or more dimensions, the
    first the batch's rows) is sliced, padding width kept; anything else (e.g. `logits_to_keep` positions, a count)
    goes to every piece."""
    rows = batch_rows(batch)

    def take(value: Any, rows_slice: slice) -> Any:
        shaped = hasattr(value, "shape") and len(value.shape) > 1 and value.shape[0] == rows
        return value[rows_slice] if shaped else value

    return [{key: take(value, piece) for key, value in batch.items()} for piece in row_slices(rows, parts)]


class SplitOnOom:
    """The persistent split of one stage: `run(attempt, rows)` calls `attempt(parts, retry)` and, when it runs out
    of memory, frees the failed attempt's memory, doubles the parts and calls again, until one row per piece fails
    too (then `OutOfMemory`). The parts stay doubled for every later batch of the stage."""

    def __init__(self, stage: str, hint: str):
        self.stage, self.hint, self.parts = stage, hint, 1

    def run(self, attempt: Callable[[int, bool], T], rows: int, **where: Any) -> T:
        retry = False
        while True:
            parts = min(self.parts, rows)
            try:
                return attempt(parts, retry)
            except _oom_error():
                pass  # handled below, once the exception (and the failed attempt's tensors it holds) is gone
            free_memory()
            if parts >= rows:
                place = ", ".join(f"{key} {value}" for key, value in where.items())
                raise OutOfMemory(f"out of memory in {self.stage} ({place}) with one row at a time; "
                                  f"{peak_memory_text()}: {self.hint}")
            self.parts = parts * 2
            record_fallback(self.stage, **where, rows=rows, split=min(self.parts, rows))
            retry = True


def _oom_error() -> type[BaseException]:
    import torch

    return torch.OutOfMemoryError


@contextmanager
def recorded_in_run(run_dir) -> Iterator[list[dict[str, Any]]]:
    """Fallbacks of the block added to `run_dir/run.json` as `oom_fallbacks` (rank 0), also when the block fails."""
    from competition.harness.distributed import is_main_process
    from competition.harness.runs import update_run_info

    with recording() as fallbacks:
        try:
            yield fallbacks
        finally:
            if fallbacks and is_main_process():
                update_run_info(run_dir, {"oom_fallbacks": fallbacks})
