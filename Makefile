# Two commands for a fresh machine:
#   make app    set up (requirements.txt) and serve the shipped model at http://127.0.0.1:7860
#   make test   set up (requirements-train.txt, Chromium for the browser test) and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: app test setup-app setup-train chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned on the first line of requirements.txt: an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.app: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.train: requirements.txt requirements-train.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-train.txt
	# Korpora (online NSMC download) without its 2018 `dataclasses` backport, which shadows the stdlib;
	# its other dependencies are in requirements-train.txt.
	$(PY) -m pip install -q --no-deps Korpora==0.2.0
	touch $@ $(VENV)/.app

setup-app: $(VENV)/.app
setup-train: $(VENV)/.train

app: setup-app
	$(PY) app.py

chromium:
	@bash scripts/install_chromium.sh

test: setup-train chromium
	HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False $(PY) -m pytest
