# Stages of the pipeline. Every target creates .venv first when it is missing.
# Variables can be overridden on the command line: make extract MANIFEST=data/manifests/<version>
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
# mmaction2 in its own environment (the export's compatibility test): torch CPU + the [mmaction2] extra's pins
MMVENV  ?= .venv-mm
MM_STAMP := $(MMVENV)/.installed-stamp

DATA      ?= data
DATASET   ?= ucf101
VIDEOS    ?= $(DATA)/demo/videos
ANNOTATIONS ?= $(DATA)/demo/annotations
MANIFESTS ?= $(DATA)/manifests
MANIFEST  ?= $(MANIFESTS)/LATEST
SHARDS    ?= $(DATA)/shards
SHARD_MANIFEST ?= $(SHARDS)/LATEST
RUNS      ?= runs
PRETRAIN_CONFIG ?= jobs/configs/pretrain.yaml
FINETUNE_CONFIG ?= jobs/configs/finetune.yaml
# best.pt is selected on the validation subset (held-out training videos), never on the test videos
CHECKPOINT ?= $(RUNS)/finetune/best.pt
VIDEO     ?=
EXPORT    ?= $(DATA)/mmaction2
VERSION   ?= $(SHARD_MANIFEST)
ARGS      ?=

.PHONY: setup mmaction2-env test lint demo demo-data manifest extract pretrain finetune evaluate preview export card versions \
        bench bench-models bench-flow bench-manifest bench-extract bench-train bench-scale bench-pipelined bench-rehearsal \
        bench-export bench-gpu clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

$(MM_STAMP): pyproject.toml | $(STAMP)
	@test -x $(MMVENV)/bin/python || $(PYTHON) -m venv $(MMVENV)
	$(MMVENV)/bin/python -m pip install --quiet --upgrade pip
	$(MMVENV)/bin/python -m pip install --quiet torch==2.13.0
	$(MMVENV)/bin/python -m pip install --quiet $$($(PY) -c "import sys; \
		toml = __import__('tomllib' if sys.version_info >= (3, 11) else 'tomli'); \
		print(' '.join(toml.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['mmaction2']))")
	@touch $(MM_STAMP)

mmaction2-env: $(MM_STAMP)

# lint (ruff check, ruff format --check, mypy over pipeline/ and models/) then the suite (which uses .venv-mm)
test: lint $(MM_STAMP)
	$(PY) -m pytest -q $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check --quiet .
	$(PY) -m ruff format --check --quiet .
	$(PY) -m mypy

# The main job end to end on the embedded demo dataset (generate -> manifest -> extract -> train -> report)
demo: $(STAMP)
	$(PY) -m jobs.demo --data $(DATA)/demo-run --runs $(RUNS)/demo $(ARGS)

demo-data: $(STAMP)
	$(PY) -m jobs.make_demo_data --out $(DATA)/demo $(ARGS)

manifest: $(STAMP)
	$(PY) -m jobs.build_manifest --dataset $(DATASET) --videos $(VIDEOS) --annotations $(ANNOTATIONS) --out $(MANIFESTS) $(ARGS)

extract: $(STAMP)
	$(PY) -m jobs.extract --manifest $(MANIFEST) --out $(SHARDS) $(ARGS)

pretrain: $(STAMP)
	$(PY) -m jobs.train --config $(PRETRAIN_CONFIG) data.manifest=$(SHARD_MANIFEST) out_dir=$(RUNS)/pretrain $(ARGS)

finetune: $(STAMP)
	$(PY) -m jobs.train --config $(FINETUNE_CONFIG) data.manifest=$(SHARD_MANIFEST) out_dir=$(RUNS)/finetune init_from=$(RUNS)/pretrain/last.pt $(ARGS)

evaluate: $(STAMP)
	$(PY) -m jobs.evaluate --checkpoint $(CHECKPOINT) --manifest $(SHARD_MANIFEST) --out $(RUNS)/evaluate $(ARGS)

preview: $(STAMP)
	$(PY) -m jobs.preview --manifest $(SHARD_MANIFEST) --video "$(VIDEO)" --out $(RUNS)/preview $(ARGS)

export: $(STAMP)
	$(PY) -m jobs.export --manifest $(SHARD_MANIFEST) --format rawframes --out $(EXPORT) $(ARGS)

card: $(STAMP)
	$(PY) -m jobs.card $(VERSION)

versions: $(STAMP)
	$(PY) -m jobs.versions ls $(DATA) $(ARGS)

bench: bench-models bench-flow bench-manifest bench-extract bench-train bench-scale bench-pipelined

bench-models: $(STAMP)
	$(PY) -m jobs.bench.models --out docs/benchmarks/models.md $(ARGS)

bench-flow: $(STAMP)
	$(PY) -m jobs.bench.flow --out docs/benchmarks/flow.md $(ARGS)

bench-manifest: $(STAMP)
	$(PY) -m jobs.bench.manifest --out docs/benchmarks/manifest.md $(ARGS)

bench-extract: $(STAMP)
	$(PY) -m jobs.bench.extract --out docs/benchmarks $(ARGS)

bench-train: $(STAMP)
	$(PY) -m jobs.bench.train --out docs/benchmarks/train.md $(ARGS)

bench-scale: $(STAMP)
	$(PY) -m jobs.bench.scale --out docs/benchmarks/scale.md $(ARGS)

bench-pipelined: $(STAMP)
	$(PY) -m jobs.bench.pipelined --out docs/benchmarks/pipelined.md $(ARGS)

# every stage at UCF-101's size (13,320 generated videos): 1.8 h of stages and 17 GB in $(RUNS)/rehearsal on this
# 2-core machine at load 2-10 (2026-12-05); ARGS="--stages ..." runs parts, --resume-classes K a smaller crash test
bench-rehearsal: $(STAMP)
	$(PY) -m jobs.bench.rehearsal --out docs/benchmarks/rehearsal.md --work $(RUNS)/rehearsal $(ARGS)

# export bytes / fidelity on a shard version: make bench-export VERSION=data/demo-run/shards/target/LATEST
bench-export: $(STAMP)
	$(PY) -m jobs.bench.export --manifest $(VERSION) --out docs/benchmarks/export.md $(ARGS)

# the GPU checks in one go, for a machine with a CUDA device and the project's packages (no $(STAMP): on a
# device machine run `make bench-gpu PY=python3`): flow sweep + CUDA/CPU agreement + batch invariance
# (flow-gpu.md), then the pipelined extraction against one task per GPU (pipelined-gpu.md)
bench-gpu:
	$(PY) -m jobs.bench.flow --device cuda --out docs/benchmarks/flow.md
	$(PY) -m jobs.bench.pipelined --out docs/benchmarks/pipelined-gpu.md --videos 96 --frames 72 --rounds 1

clean:
	rm -rf $(RUNS) $(DATA)/demo-run .pytest_cache
