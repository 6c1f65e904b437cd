#!/usr/bin/env bash
# The GPU benchmarks and GPU tests on an offline CUDA machine that already has torch, transformers and peft
# (a cluster node without network, or this project's lent H200) but none of the other dependencies.
#
#   bash benchmarks/offline_gpu.sh pack [--with-mecab] [--with-unsloth]
#                                                        # on a machine with PyPI: wheels into .whl/, data and
#                                                        # model files into .gpu/ (both git-ignored; ~40 MiB)
#   OUT=logs bash benchmarks/offline_gpu.sh PHASE [ARGS]  # on the GPU machine: install .whl/ into /tmp/site (once
#                                                        # per machine), run PHASE with ARGS passed on to its
#                                                        # script, logs and JSON under $OUT (TAG=x names them
#                                                        # PHASE-x.json, so one call can run a phase twice)
#                                                        # PHASE_TIMEOUT=s bounds the phase (default 560)
#
# PHASEs (each about 10 minutes or less on one H200):
#   tests         GPU tests: fused kernels against the unfused path, fast decoding (CUDA graph, compiled step),
#                 predict_with=dequantized on NF4
#   llm-generate  bench_llm_generate: fast loop, compiled fast loop, generate(static cache) cold and warm, at the
#                 shipped batch size and token budget (ARGS add e.g. --batch-sizes 64,128,256)
#   llm-train     bench_llm_train: QLoRA training at the shipped config, without and with gradient checkpointing
#   baseline      bench_baseline (KoBART shape): one epoch and 499 beam summaries
#   fullsize P [ARGS]  full_size_runs.py for preset P (kobart, llama3.2-ko-3b, qwen3-14b), ARGS passed on (e.g.
#                 --train-rows 512 --set predict_with=dequantized): the track's run command end to
#                 end at full size with random weights (scoring needs `pack --with-mecab`)
#   unsloth       bench_unsloth: unsloth's QLoRA throughput on the same model and batches, or what stopped it
#                 (needs `pack --with-unsloth`; its dependencies that the GPU machine lacks travel as wheels)
# Data: .gpu/data/{dev,test}.csv (copied from ../shared/data/competition by `pack`); real tokenizers from
# .gpu/models.tar.xz (a copy of ../shared/models.tar.xz). Neither is ever committed.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:?usage: offline_gpu.sh pack [--with-mecab] [--with-unsloth] | tests | llm-generate | llm-train | baseline | fullsize PRESET [ARGS] | unsloth}
shared=../shared

pack() {
  local plat=(--python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux_2_24_x86_64
              --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64)
  mkdir -p .whl .gpu/data
  if [ -x "$shared/tools/gpu-wheels.sh" ]; then bash "$shared/tools/gpu-wheels.sh" .whl; fi
  python3 -m pip download -q --no-deps "${plat[@]}" -d .whl bitsandbytes liger-kernel pydantic pydantic_core \
    annotated_types typing_inspection python-mecab-ko rouge
  for option in "$@"; do
    case "$option" in
      --with-mecab)  # the dictionary wheel is 34 MB; as an unpacked tree in xz, 24 MB (the carry limit is 64 MiB)
        python3 -m pip download -q --no-deps "${plat[@]}" -d .whl python-mecab-ko-dic
        local tree; tree=$(mktemp -d)
        python3 -m zipfile -e .whl/python_mecab_ko_dic-*.whl "$tree"
        tar -cJf .whl/python_mecab_ko_dic.tar.xz -C "$tree" . && rm -rf "$tree" .whl/python_mecab_ko_dic-*.whl ;;
      --with-unsloth) python3 -m pip download -q --no-deps "${plat[@]}" -d .whl unsloth unsloth_zoo "trl<=1.15.0" tyro \
                        cut_cross_entropy torchao msgspec hf_transfer einops docstring-parser typeguard shtab ;;
      *) echo "error: unknown pack option '$option'" >&2; exit 2 ;;
    esac
  done
  # bitsandbytes ships one library per CUDA version (43 MB): keep the CPU one and those of CUDA 12.8 and 13.0
  python3 - <<'PY'
import glob, os, zipfile

def strip(pattern, drop):
    for wheel in glob.glob(pattern):
        with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(wheel + ".tmp", "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                if not drop(item.filename):
                    dst.writestr(item, src.read(item.filename))
        os.replace(wheel + ".tmp", wheel)

keep = ("_cpu.so", "_cuda128.so", "_cuda130.so")
strip(".whl/bitsandbytes-*.whl", lambda name: name.endswith(".so") and not name.endswith(keep))
strip(".whl/unsloth-*.whl", lambda name: name.startswith("studio/"))  # its web UI: most of the 29 MB
PY
  cp "$shared/data/competition/dev.csv" "$shared/data/competition/test.csv" .gpu/data/
  cp "$shared/models.tar.xz" .gpu/
  du -sh .whl .gpu
}

install() {
  if [ ! -e /tmp/site/.installed ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    for tree in .whl/*.tar.xz; do [ -e "$tree" ] && tar -xJf "$tree" -C /tmp/site; done  # packed as trees
    mkdir -p /tmp/shared-models && tar -xJf .gpu/models.tar.xz -C /tmp/shared-models
    touch /tmp/site/.installed
  fi
  export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1
  MODELS=/tmp/shared-models/models
  OUT=${OUT:-gpu-logs}
  mkdir -p "$OUT"
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, transformers, peft; print(torch.__version__, torch.version.cuda, transformers.__version__, peft.__version__)"
  } > "$OUT/env.txt" 2>&1
}

name=$phase${TAG:+-$TAG}
limit=${PHASE_TIMEOUT:-560}
case "$phase" in
  pack) shift; pack "$@" ;;
  tests)
    install
    timeout "$limit" python3 -m pytest -q -p no:cacheprovider "${@:2}" tests/test_llm_kernels.py tests/test_llm_decode.py \
      tests/test_attention.py tests/test_llm_generate.py 2>&1 | tee "$OUT/$name.txt" ;;
  llm-generate)
    install
    timeout "$limit" python3 benchmarks/bench_llm_generate.py --data-dir .gpu/data --tokenizer "$MODELS/llama3.2-ko-3b" \
      --compare-generate-batch 0 --out "$OUT/$name.json" "${@:2}" 2> "$OUT/$name.err" ;;
  llm-train)
    install
    timeout "$limit" python3 benchmarks/bench_llm_train.py --data-dir .gpu/data \
      --tokenizer "$MODELS/llama3.2-ko-3b" --train-steps 20 --out "$OUT/$name.json" "${@:2}" 2> "$OUT/$name.err" ;;
  baseline)
    install
    timeout "$limit" python3 benchmarks/bench_baseline.py --data-dir .gpu/data --tokenizer "$MODELS/kobart" \
      --out "$OUT/$name.json" "${@:2}" 2> "$OUT/$name.err" ;;
  fullsize)
    install
    timeout "$limit" python3 benchmarks/full_size_runs.py --models "$MODELS" --data .gpu/data --presets "${2:?preset}" \
      --work /tmp/full --out "$OUT/$name-$2.json" "${@:3}" 2> "$OUT/$name-$2.err" ;;
  unsloth)
    install
    timeout "$limit" python3 benchmarks/bench_unsloth.py --data-dir .gpu/data --tokenizer "$MODELS/llama3.2-ko-3b" \
      --out "$OUT/$name.json" "${@:2}" 2> "$OUT/$name.err" ;;
  *) echo "error: unknown phase '$phase' (pack, tests, llm-generate, llm-train, baseline, fullsize, unsloth)" >&2; exit 2 ;;
esac
