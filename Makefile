# vcfscreen: the README's two commands are `make demo` and `make test`; both install what
# they need. The local stack (Kafka, Triton, Orthanc, Prometheus) is run by stack/stackctl.py.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STACK := $(PYTHON) -m stack.stackctl
PYTEST_ARGS ?=

.PHONY: install test unit demo stack-up stack-down stack-status clean-stack readme-settings

# The project environment; rebuilt only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing vcfscreen and its dependencies into $(VENV) (the first time takes a few minutes)"
	@$(PY) -m pip install -q --upgrade "pip>=25.1"
	@# torch's CUDA wheels are large (up to 230 MB each): resume an interrupted download rather than fail.
	@$(PY) -m pip install -q --resume-retries 20 -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# Offline checks of the Helm chart, alerts and dashboard (helm, kubeconform, promtool), then
# brings up the stack (what is not already up), runs every test, brings down what it started.
test: install ops-check
	@$(STACK) run -- $(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only: no servers.
unit: install
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The whole flow: stack up, DEMO_STUDIES phantom CTs stored in Orthanc, their DICOMweb events
# screened by a worker, a summary table; the stack stays up. The backend is in-process ONNX
# Runtime unless VCF_MODELS__BACKEND=triton. DEMO_ARGS passes more options (--seed, --services).
DEMO_STUDIES ?= 24
DEMO_ARGS ?=
demo: install
	@$(PY) -m streaming.demo --studies $(DEMO_STUDIES) $(DEMO_ARGS)

stack-up:
	@$(STACK) up

stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status

# Stops the stack and forgets its data (broker log, Orthanc store, Prometheus TSDB).
clean-stack: stack-down
	rm -rf .stack/kafka/data .stack/orthanc/db .stack/prometheus/data

# Regenerates the settings table of README.md from engine/settings.py.
readme-settings: install
	@$(PY) -c "import re, pathlib; from engine.settings import settings_table; p = pathlib.Path('README.md'); s = p.read_text(); p.write_text(re.sub(r'(<!-- settings:begin -->\n).*?(<!-- settings:end -->)', lambda m: m.group(1) + settings_table() + '\n' + m.group(2), s, flags=re.S))"

include ops/ops.mk
