# Two commands do the whole set-up on a fresh machine:
#   make play   -- venv + install + open the game window  (ARGS="--headless --frames 300" for no screen)
#   make test   -- venv + install + the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: play test test-all train train-crafter bench clean

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

# Reproduces the shipped checkpoint from scratch: record teacher episodes, train all stages
# (the tile codebook is fitted right after the tokenizer), then 35 CPU-minutes more of stage 2
# from those weights, 70 more on recordings that also show every style (data/styles: the others
# miss 10 of the 96), refit the codebook on all of them and tune the decoder to it, and copy the
# weights + config to checkpoints/tiny (what `make play` and the envs load). That is how the
# shipped weights were made (docs/RESULTS.md, issue 14's eighth and ninth sessions). Last, issue 15's
# 118 CPU-minutes of stage 2 with prompt-switch clips and the prompt's projection at 30x the LR
# (two runs, 28 + 90; fifteenth session), which trained the done head away; so two heads-only steps
# end it (the rest frozen: all recordings + slips at event weight 10, then slips at weight 3, which
# keeps false ends rare; seventeenth session). Last, the copy gate (world/copy_gate.py) learns on the
# frozen world (25 CPU-minutes; eighteenth session), and the passability table is counted from the
# recordings (which tiles stop a move; world/passability.py, twenty-fifth session; ~4 CPU-minutes)
# with the collectibles new ground shows (--spawn, world/spawn.py, twenty-sixth session; it turns the
# tile map on; every token a move brings in may take one, at a gain fitted so that the dream's new
# ground shows the teacher's gem density: --calibrate-spawn, envs/spawn_gain.py, thirty-fourth
# session, ~13 CPU-minutes) and the tiles that end an episode (--hazards, twenty-seventh session).
# The restyle changes no weight the calibration's walks use. Last, the restyle
# (world/restyle.py, twenty-ninth session; ~15 CPU-minutes): a prompt switch repaints the world in the
# new look, learned from teacher frames of one place in two looks.
# About 530 CPU-minutes in all. Re-running resumes
# (recording is skipped when its manifest exists, training continues its run).
TRAIN_DATA := data/explore data/revisit
TRAIN_OUT  ?= runs/tiny
train: $(STAMP)
	test -f data/explore/manifest.json || $(VENV)/bin/echo-infinity record --env teacher --motion tile --policy explore --episodes 30 --steps 1000 --seed 1 --out data/explore --overwrite
	test -f data/revisit/manifest.json || $(VENV)/bin/echo-infinity record --env teacher --motion tile --policy revisit --episodes 30 --steps 1000 --seed 2 --out data/revisit --overwrite
	test -f data/styles/manifest.json || $(VENV)/bin/echo-infinity record --env teacher --motion tile --policy explore --episodes 40 --steps 500 --seed 4 --style-switch-prob 0.02 --out data/styles --overwrite
	test -f data/slips/manifest.json || $(VENV)/bin/echo-infinity record --env teacher --motion tile --policy explore --episodes 150 --steps 200 --seed 7 --slip-prob 0.25 --out data/slips --overwrite
	$(VENV)/bin/echo-infinity train --data $(TRAIN_DATA) --out $(TRAIN_OUT) --threads 2 \
		--tok-steps 3000 --decoder-steps 0 --s1-steps 1200 --s2-steps 550 --self-rollout 0.5 --context-noise-max 0.2 \
		--ckpt-every 50 $(ARGS)
	$(VENV)/bin/echo-infinity train --data $(TRAIN_DATA) --init-from $(TRAIN_OUT) --out $(TRAIN_OUT)-s2 --threads 2 \
		--s2-steps 3000 --s2-cpu-minutes 35 --self-rollout 0.5 --context-noise-max 0.2 --self-rollout-temperature 0.25 \
		--ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity train --data $(TRAIN_DATA) data/styles --init-from $(TRAIN_OUT)-s2 --out $(TRAIN_OUT)-s3 \
		--threads 1 --s2-steps 3000 --s2-cpu-minutes 70 --self-rollout 0.5 --context-noise-max 0.2 \
		--self-rollout-temperature 0.25 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity codebook --checkpoint $(TRAIN_OUT)-s3 --data $(TRAIN_DATA) data/styles \
		--model '{"tokenizer": {"decoder": "tile", "decoder_hidden": 1024, "decoder_layers": 3}, "sampler": {"snap_keep": 2.0}}' \
		--decoder-steps 10000 --out $(TRAIN_OUT)-final
	$(VENV)/bin/echo-infinity train --data $(TRAIN_DATA) data/styles data/slips --init-from $(TRAIN_OUT)-final \
		--out $(TRAIN_OUT)-heads --model '{"dit": {"outcome_heads": "centre"}}' --s2-train heads --s2-lr 1e-3 \
		--event-weight 10 --threads 1 --s2-steps 3000 --s2-cpu-minutes 25 --self-rollout 0.5 --context-noise-max 0.2 \
		--self-rollout-temperature 0.25 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity train --data data/slips --init-from $(TRAIN_OUT)-heads --out $(TRAIN_OUT)-heads2 \
		--s2-train heads --s2-lr 1e-3 --event-weight 10 --threads 1 --s2-steps 3000 --s2-cpu-minutes 22 \
		--self-rollout 0.5 --context-noise-max 0.2 --self-rollout-temperature 0.25 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity train --data $(TRAIN_DATA) data/styles --init-from $(TRAIN_OUT)-heads2 --out $(TRAIN_OUT)-p28 \
		--threads 1 --s2-steps 3000 --s2-cpu-minutes 28 --self-rollout 0.5 --context-noise-max 0.2 \
		--self-rollout-temperature 0.25 --s2-switch-clips 2 --prompt-lr-mult 30 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity train --data $(TRAIN_DATA) data/styles --init-from $(TRAIN_OUT)-p28 --out $(TRAIN_OUT)-p118 \
		--threads 1 --s2-steps 3000 --s2-cpu-minutes 90 --self-rollout 0.5 --context-noise-max 0.2 \
		--self-rollout-temperature 0.25 --s2-switch-clips 2 --prompt-lr-mult 30 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity train --data $(TRAIN_DATA) data/styles data/slips --init-from $(TRAIN_OUT)-p118 \
		--out $(TRAIN_OUT)-h1 --s2-train heads --s2-lr 1e-3 --event-weight 10 --threads 1 --s2-steps 3000 \
		--s2-cpu-minutes 20 --self-rollout 0.5 --context-noise-max 0.2 --self-rollout-temperature 0.25 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity train --data data/slips --init-from $(TRAIN_OUT)-h1 --out $(TRAIN_OUT)-h2 \
		--s2-train heads --s2-lr 1e-3 --event-weight 3 --threads 1 --s2-steps 3000 --s2-cpu-minutes 10 \
		--self-rollout 0.5 --context-noise-max 0.2 --self-rollout-temperature 0.25 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity train --data $(TRAIN_DATA) data/styles --init-from $(TRAIN_OUT)-h2 --out $(TRAIN_OUT)-gate \
		--model '{"dit": {"copy_gate": true}}' --s2-train gate --s2-lr 1e-3 --threads 1 --s2-steps 3000 \
		--s2-cpu-minutes 25 --self-rollout 0.5 --context-noise-max 0.2 --self-rollout-temperature 0.25 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity passability --checkpoint $(TRAIN_OUT)-gate --data $(TRAIN_DATA) data/slips \
		--spawn --spawn-on entered --hazards --calibrate-spawn --threads 2 --out $(TRAIN_OUT)-pass
	$(VENV)/bin/echo-infinity restyle --checkpoint $(TRAIN_OUT)-pass --threads 2 --out $(TRAIN_OUT)-restyle
	mkdir -p checkpoints/tiny && cp $(TRAIN_OUT)-restyle/model.safetensors $(TRAIN_OUT)-restyle/config.json checkpoints/tiny/

# Issue 18: a world model of Crafter (envs/crafter.py: 64x64, one 8-px tile per token, 17 actions).
# Records 300 explore + 200 revisit episodes (Crafter's night zombies end them at ~180 steps), then
# trains every stage on one thread within fixed CPU budgets (about 2 hours), then the copy gate on the
# frozen world (20 CPU-minutes), counts which tiles stop a move (world/passability.py), and copies the weights to
# checkpoints/crafter-tiny. Resumes like `make train`. Measure it: echo-infinity eval --checkpoint checkpoints/crafter-tiny
CRAFTER_DATA := data/crafter_explore data/crafter_revisit
CRAFTER_OUT  ?= runs/crafter-tiny
train-crafter: $(STAMP)
	test -f data/crafter_explore/manifest.json || $(VENV)/bin/echo-infinity record --env crafter --policy explore --episodes 300 --steps 1000 --seed 11 --out data/crafter_explore --overwrite
	test -f data/crafter_revisit/manifest.json || $(VENV)/bin/echo-infinity record --env crafter --policy revisit --episodes 200 --steps 1000 --seed 12 --out data/crafter_revisit --overwrite
	$(VENV)/bin/echo-infinity train --data $(CRAFTER_DATA) --preset crafter-tiny --out $(CRAFTER_OUT) --threads 1 \
		--tok-steps 3000 --tok-cpu-minutes 20 --decoder-steps 0 --s1-steps 1200 --s1-cpu-minutes 50 \
		--s2-steps 550 --s2-cpu-minutes 30 --self-rollout 0.5 --context-noise-max 0.2 --self-rollout-temperature 0.25 \
		--ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity train --data $(CRAFTER_DATA) --init-from $(CRAFTER_OUT) --out $(CRAFTER_OUT)-gate \
		--model '{"dit": {"copy_gate": true}}' --s2-train gate --s2-lr 1e-3 --threads 1 --s2-steps 3000 \
		--s2-cpu-minutes 20 --self-rollout 0.5 --context-noise-max 0.2 --self-rollout-temperature 0.25 --ckpt-every 25 $(ARGS)
	$(VENV)/bin/echo-infinity passability --checkpoint $(CRAFTER_OUT)-gate --data $(CRAFTER_DATA) --out $(CRAFTER_OUT)-pass
	mkdir -p checkpoints/crafter-tiny && cp $(CRAFTER_OUT)-pass/model.safetensors $(CRAFTER_OUT)-pass/config.json checkpoints/crafter-tiny/

bench: $(STAMP)
	$(VENV)/bin/echo-infinity bench --target teacher --frames 20000 --json runs/bench/teacher_64.json

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
