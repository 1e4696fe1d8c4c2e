# The README's two commands: `make demo` and `make test`. Each sets up .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ersm-installed
# torch/torchvision are pinned to the releases this project is tested with.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# The suite runs in this many processes (pytest-xdist; each test file stays in one process, and each
# process uses one torch thread, see tests/conftest.py); `make test TEST_WORKERS=1` runs it in one.
TEST_WORKERS ?= 2

# `make test-min`: the suite again in .venv-min, with every other dependency at the oldest
# release pyproject.toml allows (.ci/min_requirements.py reads the bounds), so they stay true.
VENV_MIN   ?= .venv-min
PY_MIN     := $(VENV_MIN)/bin/python
STAMP_MIN  := $(VENV_MIN)/.ersm-installed
# Compiled packages come as wheels only: an old release with no wheel for this Python must
# raise its bound in pyproject.toml, not be built from source here.
WHEELS_ONLY := numpy,scipy,pandas,matplotlib,pillow,contourpy,kiwisolver
# The tests that exercise what the old releases could break, chosen to keep CI's two runs short:
# numpy/scipy statistics and the deletion, occlusion and sparsity evaluators (ersm_eval), pandas
# tables and matplotlib/seaborn/jinja2 figures and HTML (reports tables + html), timm backbones and
# transforms and Pillow images (ersm_core model/transforms/datasets), typer/click/rich commands
# (cli; training runs in the session fixtures every evaluation test uses). Left out: the train
# command's own tests (process kills, resume), studies' end-to-end runs, training-dynamics, demo, verdict-sentence, safety, torchrun and
# README tests: slow, and depending on torch (the same pinned release in both venvs) or on the
# project's own rules rather than on these packages.
MIN_TESTS  ?= tests/ersm_eval/test_stats.py tests/ersm_eval/test_deletion.py tests/ersm_eval/test_both_orders.py \
	tests/ersm_eval/test_occlusion.py tests/ersm_eval/test_sparsity.py tests/ersm_eval/test_localization.py \
	tests/ersm_eval/test_fills.py tests/ersm_eval/test_fills_nli.py tests/ersm_eval/test_orders.py \
	tests/ersm_eval/test_study_stats.py tests/ersm_eval/test_study_tables.py tests/ersm_eval/test_api.py \
	tests/reports/test_reports_tables.py tests/reports/test_reports_html.py tests/reports/test_paper_tables.py \
	tests/ersm_core/test_transforms.py tests/ersm_core/test_model.py tests/ersm_core/test_datasets.py \
	tests/cli/test_help.py tests/cli/test_entry_points.py tests/cli/test_deletion_cli.py \
	tests/cli/test_occlusion_cli.py tests/cli/test_sparsity_cli.py tests/cli/test_report_cli.py

.PHONY: setup demo test test-min bench clean

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
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

$(STAMP_MIN): pyproject.toml .ci/min_requirements.py
	rm -rf $(VENV_MIN)
	python3 -m venv $(VENV_MIN)
	$(PY_MIN) -m pip install -q --upgrade pip
	$(PY_MIN) -m pip install -q $(TORCH)
	$(PY_MIN) .ci/min_requirements.py > $(VENV_MIN)/min-constraints.txt
	$(PY_MIN) -m pip install -q --only-binary=$(WHEELS_ONLY) -c $(VENV_MIN)/min-constraints.txt -e '.[test]'
	touch $(STAMP_MIN)

test-min: $(STAMP_MIN)
	@echo "test-min: $$(tr '\n' ' ' < $(VENV_MIN)/min-constraints.txt)"
	$(PY_MIN) -m pytest -n $(TEST_WORKERS) --dist loadfile $(MIN_TESTS)

bench: $(STAMP)
	$(PY) benchmarks/deletion_speed.py

clean:
	rm -rf runs build *.egg-info
