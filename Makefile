# Two commands do the whole set-up on a fresh machine:
#   make play   -- venv + install + open the game window  (ARGS="--headless --frames 300" for no screen)
#   make test   -- venv + install + the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: play test test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch, pinned: an unpinned torch pulls gigabytes of CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

play: $(STAMP)
	$(VENV)/bin/echo-infinity play $(ARGS)

test: $(STAMP)
	SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy $(PY) -m pytest -q $(ARGS)

test-all: $(STAMP)
	SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy $(PY) -m pytest -q -m "" $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/echo-infinity bench --target teacher --frames 20000 --json runs/bench/teacher_64.json

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
