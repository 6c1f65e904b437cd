"""The rates of one H200 that the GPU benchmarks' bounds are computed from (one place for both tracks)."""

BF16_FLOPS = 790e12  # dense bf16 matrix rate measured on an H200 (8192^3 products on random data)
HBM_BYTES_PER_S = 4.3e12  # a streaming read of H200 memory (the issues' figure; the data sheet says 4.8 TB/s)
