# The whole pipeline, readable top-down. `make demo` and `make test` each set everything up on a fresh clone.
# `make test-fast` runs the unit tests only: it leaves out the tests marked integration (they train, start processes
# or read ../shared), gpu and postgres.
# Variables: MODEL (preset), DATA (folder with train/dev/test.csv), CONFIG (YAML), ARGS (KEY=VALUE overrides),
# RUN (a run folder), RESUME (a run folder to continue), TRACK (baseline|llm), TRIALS, MAXLEN, PREDS (prediction
# CSVs), GPUS, K (folds), FROM/OUT/SCALE (make checkpoint), TOKENIZER/OUT (make truncation), MODELS/SHOTS (make
# screen: presets, few-shot counts), INPUT/OUT (make predict), SUBMISSIONS (the one folder every command writes
# submissions and their ledger to). Both tracks read <track>/configs/<MODEL>.yaml unless CONFIG names another file.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY := .venv/bin/python
DATA ?= data
SAMPLE := data/sample
RUNS ?= runs
SUBMISSIONS ?= submissions
export SUBMISSIONS  # the Python commands read it too (--submissions defaults to $SUBMISSIONS)
CONFIG ?=
ARGS ?=
GPUS ?= 1
# CPU machines get this CPU build of torch; machines with nvidia-smi get the default CUDA build.
CPU_TORCH ?= torch==2.13.0
TORCH_INDEX ?=
CONFIG_FLAG = $(if $(CONFIG),--config $(CONFIG),)
RESUME_FLAG = $(if $(RESUME),--resume $(RESUME),)
# GPUS>1: one process per GPU through torchrun (DDP); only rank 0 writes files.
LAUNCH = $(if $(filter-out 1,$(GPUS)),.venv/bin/torchrun --standalone --nproc_per_node=$(GPUS),$(PY))

.PHONY: setup demo test test-fast baseline llm screen truncation checkpoint tune tune-gen kfold predict ensemble \
        submit bench bench-metric bench-baseline bench-llm bench-ensemble sample-data demo-core demo-baseline \
        demo-llm demo-tune demo-ensemble test-services clean

setup: .venv/.installed

.venv/.installed: pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q torch && $(PY) -m pip install -q -e ".[dev,gpu]"; \
	else $(PY) -m pip install -q $(CPU_TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),) && $(PY) -m pip install -q -e ".[dev]"; fi
	touch $@

# ---- the two README commands ----
demo: setup demo-core demo-baseline demo-llm demo-tune demo-ensemble
	@echo "demo finished: runs in $(RUNS)/demo, submissions in $(SUBMISSIONS)/ (ledger: $(SUBMISSIONS)/ledger.csv)"

test: setup test-services
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-fast: setup  # the unit tests: about 2 minutes on 2 cores
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not integration and not gpu and not postgres"

# PostgreSQL server for the shared-study tuning test (installed where we are root with apt; else that test skips).
test-services:
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	  || echo "note: PostgreSQL could not be installed; the shared-study test will skip"; \
	else echo "note: PostgreSQL not installed; the shared-study test will skip"; fi

# ---- demo stages (bundled sample data, tiny models, CPU) ----
demo-core:
	$(PY) -m competition.validate --data $(SAMPLE)
	$(PY) -m competition.trivial --data $(SAMPLE) --out $(RUNS)/demo/lead
	$(PY) -m competition.score --pred $(RUNS)/demo/lead/preds_dev.csv --gold $(SAMPLE)/dev.csv \
	    --report $(RUNS)/demo/lead/report
	$(PY) -m competition.score --pred $(RUNS)/demo/lead/preds_test.csv --gold $(SAMPLE)/test_refs.csv
	$(PY) -m competition.submit --pred $(RUNS)/demo/lead/preds_test.csv --test $(SAMPLE)/test.csv --label demo-lead \
	    --dev-pred $(RUNS)/demo/lead/preds_dev.csv --gold $(SAMPLE)/dev.csv --submissions $(SUBMISSIONS)

demo-baseline:
	$(PY) -m baselines.run --model tiny-bart --data $(SAMPLE) --out $(RUNS)/demo/baseline --demo \
	    --submissions $(SUBMISSIONS)

demo-llm:
	$(PY) -m llm.run --model tiny-llama --data $(SAMPLE) --out $(RUNS)/demo/llm --demo --submissions $(SUBMISSIONS)

demo-tune:
	$(PY) -m tuning.tune --track baseline --model tiny-bart --data $(SAMPLE) --trials 3 \
	    --out $(RUNS)/demo/tune --demo

demo-ensemble:
	$(PY) -m ensemble.extractive --data $(SAMPLE) --out $(RUNS)/demo/extractive
	$(PY) -m ensemble --runs $(RUNS)/demo --gold $(SAMPLE)/dev.csv --out $(RUNS)/demo/ensemble
	$(PY) -m competition.submit --pred $(RUNS)/demo/ensemble/preds_test.csv --test $(SAMPLE)/test.csv \
	    --label demo-ensemble --dev-pred $(RUNS)/demo/ensemble/preds_dev.csv --gold $(SAMPLE)/dev.csv \
	    --submissions $(SUBMISSIONS)

# ---- a competitor's commands (real data in $(DATA)) ----
baseline: setup
	$(LAUNCH) -m baselines.run --model $(or $(MODEL),kobart) --data $(DATA) --out $(RUNS) \
	    --submissions $(SUBMISSIONS) $(CONFIG_FLAG) $(RESUME_FLAG) $(ARGS)

llm: setup
	$(LAUNCH) -m llm.run --model $(or $(MODEL),llama3.2-ko-3b) --data $(DATA) --out $(RUNS) \
	    --submissions $(SUBMISSIONS) $(CONFIG_FLAG) $(RESUME_FLAG) $(ARGS)

# Base models scored on dev without training (zero-/few-shot), ranked in $(RUNS)/screen/screen.md; rerun to resume.
screen: setup
	$(PY) -m llm.screen --models $(or $(MODELS),llama3.2-ko-3b) --shots $(or $(SHOTS),0) --data $(DATA) \
	    --out $(RUNS)/screen $(ARGS)

# A variable: a literal list inside $(or ...) would be split at its commas.
TRUNCATION_MAXLEN := 512,768,1024,2048
truncation: setup
	$(PY) -m competition.truncation --model $(or $(MODEL),llama3.2-ko-3b) --data $(DATA) \
	    --maxlen $(or $(MAXLEN),$(TRUNCATION_MAXLEN)) --out $(or $(OUT),reports/truncation) \
	    $(if $(TOKENIZER),--tokenizer $(TOKENIZER))

# A random-weight checkpoint from a folder of config + tokenizer (offline runs: then ARGS=model_path=$(OUT)).
checkpoint: setup
	$(PY) -m competition.build_checkpoint --from $(FROM) --out $(OUT) --scale $(or $(SCALE),tiny) \
	    --device $(or $(DEVICE),cpu)

tune: setup
	$(PY) -m tuning.tune --track $(or $(TRACK),baseline) --model $(or $(MODEL),kobart) --data $(DATA) \
	    --trials $(or $(TRIALS),30) --out $(RUNS)/tune $(CONFIG_FLAG) $(ARGS)

tune-gen: setup
	$(PY) -m tuning.generation --run $(RUN) --data $(DATA) --trials $(or $(TRIALS),30) $(ARGS)

# K fold runs (each picks its best checkpoint on its held-out fold), their fold ensemble and a submission;
# rerun to resume. ARGS="--include-dev" folds dev in too (final submission; dev scores become in-sample).
kfold: setup
	$(LAUNCH) -m kfold --track $(or $(TRACK),baseline) \
	    --model $(or $(MODEL),$(if $(filter llm,$(TRACK)),llama3.2-ko-3b,kobart)) --data $(DATA) --k $(or $(K),5) \
	    --out $(RUNS)/kfold $(CONFIG_FLAG) $(ARGS)

# Summaries of INPUT (fname,dialogue CSV) from a finished run or K-fold folder, with its generation settings (ARGS:
# generation KEY=VALUE only); OUT defaults to $(RUN)/predict/<input stem>.csv and is never overwritten.
predict: setup
	$(if $(RUN),,$(error RUN=runs/<a run folder> is required))
	$(if $(INPUT),,$(error INPUT=FILE.csv is required))
	$(PY) -m $(if $(wildcard $(RUN)/folds.csv),kfold.predict,competition.predict) --run $(RUN) --input $(INPUT) \
	    $(if $(OUT),--out $(OUT),) $(ARGS)

ensemble: setup
	$(PY) -m ensemble --runs $(RUNS) --gold $(DATA)/dev.csv --out $(RUNS)/ensemble $(if $(PREDS),--preds $(PREDS),) $(ARGS)

submit: setup
	$(PY) -m competition.submit --pred $(RUNS)/ensemble/preds_test.csv --test $(DATA)/test.csv --label ensemble \
	    --dev-pred $(RUNS)/ensemble/preds_dev.csv --gold $(DATA)/dev.csv --submissions $(SUBMISSIONS)

# ---- benchmarks (speed targets live here, not in unit tests) ----
bench: bench-metric bench-ensemble

bench-metric: setup
	$(PY) benchmarks/bench_metric.py

bench-ensemble: setup  # one CPU core (taskset -c 0 where available): the targets are single-core
	$(if $(shell command -v taskset),taskset -c 0,) $(PY) benchmarks/bench_ensemble.py

bench-baseline: setup  # GPU
	$(PY) benchmarks/bench_baseline.py

bench-llm: setup  # GPU: training throughput, then the time to generate every test summary
	$(PY) benchmarks/bench_llm_train.py
	$(PY) benchmarks/bench_llm_generate.py

sample-data: setup
	$(PY) -m competition.sample_data --out $(SAMPLE)

clean:
	rm -rf .cache $(RUNS) reports
