"""Hold all but N GiB of a GPU's free memory, so another process sees what a smaller card would.

    python benchmarks/hold_gpu_memory.py --free-gib 23.5      # holds until its stdin closes (or it is killed)

Plain allocations (PyTorch's allocator calls cudaMalloc for each 1 GiB chunk), made once; the GPU does no work.
When holding, prints one JSON line to stdout: `held_gib`, `free_gib` (what is left, as `torch.cuda.mem_get_info`
reports it to the next process) and `total_gib`. `benchmarks/full_size_runs.py --memory-cap` starts it.
"""

from __future__ import annotations

import argparse
import json
import sys

GIB = 2**30
CHUNK = GIB  # allocation size: small enough to fill the last gigabyte closely, few enough to be quick


def bytes_to_hold(free_bytes: int, keep_free_gib: float) -> int:
    """Bytes to allocate so that `keep_free_gib` GiB stay free (0 when less than that is free already)."""
    return max(0, free_bytes - int(keep_free_gib * GIB))


def chunk_sizes(total: int, chunk: int = CHUNK) -> list[int]:
    """`total` bytes as chunks of `chunk` bytes and one remainder (2 MiB-aligned: the allocator's granularity)."""
    sizes = [chunk] * (total // chunk)
    rest = (total % chunk) // (2 * 2**20) * (2 * 2**20)
    return sizes + ([rest] if rest else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--free-gib", type=float, required=True, help="GiB to leave free")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA GPU to hold memory on", file=sys.stderr)
        return 2
    free, total = torch.cuda.mem_get_info()  # after this process's own context
    held = [torch.empty(size, dtype=torch.uint8, device="cuda") for size in chunk_sizes(bytes_to_hold(free, args.free_gib))]
    torch.cuda.synchronize()
    free_after, _ = torch.cuda.mem_get_info()
    print(json.dumps({"held_gib": round(sum(t.numel() for t in held) / GIB, 2), "free_gib": round(free_after / GIB, 2),
                      "total_gib": round(total / GIB, 2)}), flush=True)
    sys.stdin.read()  # hold until the parent closes our stdin
    return 0


if __name__ == "__main__":
    sys.exit(main())
