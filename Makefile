# spinfer: `make run` (set up + main job on the small default), `make test` (set up + tests).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba

.DEFAULT_GOAL := help
.PHONY: help setup run test test-full lint format bench validate clean lock gpu gpu-setup gpu-pins gpu-wheels gpu-check

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install spinfer with the exact versions of requirements.lock
	@$(BIN)/dvc config --local core.check_update false >/dev/null 2>&1 || true

run: setup ## run the main job (dvc repro) on the small default profile
	$(BIN)/dvc pull -q data.dvc   # the experimental-image sample, from the in-repo remote
	$(BIN)/spinfer doctor config --params params.yaml   # a wrong key or profile: one line
	$(BIN)/dvc repro
	@echo "done: see artifacts/ (dvc status is clean)"

test: setup ## run the test suite (what CI runs)
	$(BIN)/python -m pytest -q --timeout=900

test-full: setup ## tests plus the physics validation scripts
	$(BIN)/python -m pytest -q
	$(BIN)/python validation/physics_checks.py --out artifacts/validation
	$(BIN)/python validation/mc_bias.py

lint: setup ## ruff check and format check
	$(BIN)/ruff check src tests benchmarks validation notebooks
	$(BIN)/ruff format --check src tests benchmarks validation notebooks

format: setup ## ruff format and autofix
	$(BIN)/ruff format src tests benchmarks validation notebooks
	$(BIN)/ruff check --fix src tests benchmarks validation notebooks

bench: setup ## speed benchmarks (print ratios against a baseline of the same run)
	$(BIN)/python benchmarks/mc_speed.py
	$(BIN)/python benchmarks/generate_speed.py
	$(BIN)/python benchmarks/loader_speed.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/serve_load.py

validate: setup ## physics validation: figures, bias check, relaxation vs Spirit, torque-balance inverse, descriptor probe, reader and transfer bias
	$(BIN)/python validation/physics_checks.py --out artifacts/validation
	$(BIN)/python validation/mc_bias.py
	$(BIN)/dvc pull -q data.dvc && $(BIN)/python validation/relaxation.py --out artifacts/validation
	$(BIN)/python validation/scale_check.py --plot
	@if [ -d artifacts/noisy.zarr ]; then $(BIN)/python validation/torque_balance.py \
		&& $(BIN)/python validation/descriptor_probe.py; \
	else echo "validate: no dataset, torque_balance and descriptor_probe skipped (make run first)"; fi
	@if [ -f artifacts/models/resnet18-noisy/model.pt ]; then $(BIN)/python validation/reader_bias.py \
		&& $(BIN)/python validation/transfer_bias.py --blur 0 0.3 0.6 0.9 1.2 1.5; \
	else echo "validate: no trained resnet18-noisy, reader_bias and transfer_bias skipped (make run first)"; fi

# --- one GPU host -----------------------------------------------------------------------
# A bare GPU host has Python with torch, timm and numba; the rest comes as wheels of the
# versions in requirements.lock, fetched once where PyPI is reachable (`make gpu-wheels`)
# and installed offline (`make gpu`) into a venv that sees the host's packages, also when
# that Python is itself a venv or conda env (a .pth file names its site-packages).
WHEELS ?= wheels
GPU_PYTHON ?= python3
GPU_PY_VERSION ?= 3.12
GPU_VENV ?= .venv-gpu
# `pip list --format=freeze` of the GPU host (or one name a line): what it already has is not fetched
GPU_HOST_PACKAGES ?=
# 0: no DVC on the GPU host; `make gpu` then runs the stages with benchmarks/pipeline_stages.py
GPU_DVC ?= 1
# not fetched: the host's torch stack with what only it needs (numpy too, built against it),
# what only the tests and notebooks use, and with GPU_DVC=0 what only DVC needs;
# tests/test_gpu_host.py checks the lists against the installed packages' metadata
GPU_HOST_STACK := torch|torchvision|timm|numba|llvmlite|numpy|triton|nvidia-.*|cuda-.*|sympy|mpmath|safetensors|huggingface-hub|hf-xet|httpx2|httpcore2|truststore
DEV_ONLY := pytest.*|hypothesis|iniconfig|pluggy|ruff|spirit|nbclient|nbformat|fastjsonschema|jsonschema.*|referencing|rpds-py|ipykernel|ipython.*|jupyter-.*|debugpy|pyzmq|comm|traitlets|matplotlib-inline|jedi|parso|pexpect|ptyprocess|stack-data|executing|asttokens|pure-eval|nest-asyncio2
DVC_ONLY := aiohttp-retry|amqp|antlr4-python3-runtime|appdirs|asyncssh|atpublic|billiard|celery|click-didyoumean|click-plugins|click-repl|colorama|configobj|dictdiffer|diskcache|distro|dpath|dulwich|dvc|dvc-.*|entrypoints|filelock|flatten-dict|flufl-lock|funcy|grandalf|gto|hydra-core|iterative-telemetry|kombu|networkx|omegaconf|orjson|pathspec|platformdirs|prompt-toolkit|pydantic-settings|pydot|pygit2|pygtrie|ruamel-yaml|scmrepo|semver|shortuuid|shtab|sqltrie|tabulate|tomlkit|tzlocal|vine|voluptuous|zc-lockfile
# requirements.lock less those and the host's packages; names compared as PEP 503 normalises them
GPU_PINS = $(shell grep -v '^\#' requirements.lock | awk -F'==' -v skip='^($(GPU_HOST_STACK)|$(DEV_ONLY)$(if $(filter 0,$(GPU_DVC)),|$(DVC_ONLY)))$$' \
	'function key(n) { n = tolower(n); sub(/[ @<>=!~;\[].*/, "", n); gsub(/[-_.]+/, "-", n); return n } \
	FILENAME != "-" { if (key($$1) != "") host[key($$1)] = 1; next } !(key($$1) ~ skip || key($$1) in host)' \
	$(or $(wildcard $(GPU_HOST_PACKAGES)),/dev/null) -)
GPU_HOST_CHECK = $(if $(GPU_HOST_PACKAGES),test -f $(GPU_HOST_PACKAGES) || { echo "error: GPU_HOST_PACKAGES: no file $(GPU_HOST_PACKAGES)" >&2; exit 1; })

gpu-pins: ## list the pins gpu-wheels fetches (GPU_HOST_PACKAGES=file leaves out what the host has)
	@$(GPU_HOST_CHECK)
	@printf '%s\n' $(GPU_PINS)

gpu-wheels: ## fetch the wheels a bare GPU host lacks into $(WHEELS)/ (its Python: GPU_PY_VERSION)
	@$(GPU_HOST_CHECK)
	mkdir -p $(WHEELS)
	@for req in setuptools wheel $(GPU_PINS); do \
		$(GPU_PYTHON) -m pip download --quiet --no-deps --dest $(WHEELS) --only-binary=:all: \
			--python-version $(GPU_PY_VERSION) $$req 2>/dev/null \
		|| $(GPU_PYTHON) -m pip wheel --quiet --no-deps --wheel-dir $(WHEELS) $$req \
		|| { echo "error: no wheel for $$req" >&2; exit 1; }; \
	done
	@du -sh $(WHEELS)

gpu-check: gpu-setup ## on a GPU host: torch engine speed, determinism, agreement with numba
	$(GPU_VENV)/bin/python benchmarks/mc_speed.py
	$(GPU_VENV)/bin/python validation/gpu_engine_check.py

gpu-setup: ## on a GPU host, offline: $(GPU_VENV) with the wheels of $(WHEELS)/ over the host's packages
	@test -d $(WHEELS) || { echo "error: no wheel folder $(WHEELS) (make gpu-wheels on a host with PyPI)" >&2; exit 1; }
	@ls $(WHEELS)/*.whl >/dev/null 2>&1 || { echo "error: no wheels in $(WHEELS) (make gpu-wheels on a host with PyPI)" >&2; exit 1; }
	@test -x $(GPU_VENV)/bin/python || $(GPU_PYTHON) -m venv --system-site-packages --without-pip $(GPU_VENV)
	@$(GPU_PYTHON) -c 'import site, sysconfig; print(*dict.fromkeys([*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]), sep="\n")' \
		> "$$($(GPU_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/_spinfer_gpu_host.pth"
	@$(GPU_VENV)/bin/python -c 'import importlib.util as u, sys; m = [n for n in ("pip", "torch", "timm", "numba") if u.find_spec(n) is None]; \
		sys.exit(f"error: $(GPU_PYTHON) has no {chr(44).join(m)} (a GPU host brings pip, torch, timm and numba)" if m else 0)'
	$(GPU_VENV)/bin/python -m pip install --quiet --no-index --no-deps --no-warn-conflicts $(WHEELS)/*.whl
	$(GPU_VENV)/bin/python -m pip install --quiet --no-index --no-deps --no-build-isolation -e .

gpu: gpu-setup ## profile gpu on one GPU host, offline, generation to promotion: make gpu WHEELS=dir
	@$(GPU_VENV)/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: torch sees no CUDA device')"
	sed -i 's/^profile: .*/profile: gpu/' params.yaml   # `git checkout params.yaml` restores it
ifeq ($(GPU_DVC),0)
	PATH=$(abspath $(GPU_VENV))/bin:$$PATH $(GPU_VENV)/bin/python benchmarks/pipeline_stages.py \
		--pull data.dvc config promote
else
	$(GPU_VENV)/bin/python -m dvc config --local core.check_update false
	$(GPU_VENV)/bin/python -m dvc pull -q data.dvc
	PATH=$(abspath $(GPU_VENV))/bin:$$PATH $(GPU_VENV)/bin/python -m dvc repro config promote
endif
	@echo "done: profile gpu, generation to promotion; results in artifacts/ and mlruns/"
	@echo "(the rest, the report, a tuned winner and the SPLEEM estimates: dvc repro, or without"
	@echo " DVC python benchmarks/pipeline_stages.py)"

lock: ## re-resolve requirements.lock from pyproject.toml in a fresh venv (needs PyPI)
	rm -rf .cache/lock-venv && $(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/python -m pip install --quiet --upgrade pip
	.cache/lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' requirements.lock; .cache/lock-venv/bin/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .cache/lock-venv

clean: ## remove build caches (keeps .venv and artifacts)
	rm -rf .cache .pytest_cache .ruff_cache
