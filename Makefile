# The README's two commands: `make demo` and `make test`. Each sets up .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ersm-installed
# torch/torchvision are pinned to the releases this project is tested with.
TORCH  ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ersm-eval demo --out runs/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/deletion_speed.py

clean:
	rm -rf runs build *.egg-info
