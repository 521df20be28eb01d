# The newcomer's entry points. Each target creates .venv and installs the package when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo
# the first synthetic test user, and one of its clutter videos (shell expressions: the data exists only mid-recipe)
DEMO_USER = $$(ls $(DEMO_DIR)/data/test | head -n 1)
DEMO_VIDEO = $$(find $(DEMO_DIR)/data/test/$(DEMO_USER) -mindepth 3 -maxdepth 3 -path '*/clutter/*' | sort | head -n 1)
# the same for the photo demo; its clutter video's object is the folder two levels up
PHOTO_DIR ?= runs/demo-photos
PHOTO_USER = $$(ls $(PHOTO_DIR)/data/test | head -n 1)
PHOTO_VIDEO = $$(find $(PHOTO_DIR)/data/test/$(PHOTO_USER) -mindepth 3 -maxdepth 3 -path '*/clutter/*' | sort | head -n 1)

.PHONY: demo test test-all lint bench fuzz clean docker-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when pyproject.toml changes; the stamp records the last install.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job on the embedded synthetic dataset: generate it (once) and summarize it, meta-train the CPU demo
# recipe, personalize a test user's recognizer and run it on one video (an annotated copy and a probability plot),
# evaluate the test users (ORBIT protocol).
# Then the same on real photos with ImageNet weights and no meta-training (configs/photos_pretrained.yaml; epochs 0).
demo: $(VENV)/.installed
	@test -d $(DEMO_DIR)/data || $(BIN)/orbit-lite data synth $(DEMO_DIR)/data --preset demo --seed 0
	$(BIN)/orbit-lite data summarize $(DEMO_DIR)/data
	rm -rf $(DEMO_DIR)/train $(DEMO_DIR)/eval $(DEMO_DIR)/personal.pt
	$(BIN)/orbit-lite train --data $(DEMO_DIR)/data --config configs/cpu_demo.yaml --out $(DEMO_DIR)/train
	$(BIN)/orbit-lite personalize --user $(DEMO_USER) --data $(DEMO_DIR)/data \
		--checkpoint $(DEMO_DIR)/train/checkpoints/best.pt --out $(DEMO_DIR)/personal.pt
	$(BIN)/orbit-lite recognize --model $(DEMO_DIR)/personal.pt "$(DEMO_VIDEO)" \
		--annotate $(DEMO_DIR)/recognized.mp4 --plot $(DEMO_DIR)/recognized.png
	$(BIN)/orbit-lite evaluate --data $(DEMO_DIR)/data --checkpoint $(DEMO_DIR)/train/checkpoints/best.pt \
		--out $(DEMO_DIR)/eval
	@echo "== real photos, pretrained efficientnet_lite0, nothing meta-trained =="
	@test -d $(PHOTO_DIR)/data || $(BIN)/orbit-lite data synth $(PHOTO_DIR)/data --preset photos --seed 0
	rm -rf $(PHOTO_DIR)/model $(PHOTO_DIR)/eval $(PHOTO_DIR)/personal.pt
	$(BIN)/orbit-lite train --data $(PHOTO_DIR)/data --config configs/photos_pretrained.yaml --out $(PHOTO_DIR)/model
	$(BIN)/orbit-lite personalize --user $(PHOTO_USER) --data $(PHOTO_DIR)/data \
		--checkpoint $(PHOTO_DIR)/model/checkpoints/best.pt --out $(PHOTO_DIR)/personal.pt
	video="$(PHOTO_VIDEO)"; $(BIN)/orbit-lite recognize --model $(PHOTO_DIR)/personal.pt "$$video" \
		--label "$$(basename "$$(dirname "$$(dirname "$$video")")")"
	$(BIN)/orbit-lite evaluate --data $(PHOTO_DIR)/data --checkpoint $(PHOTO_DIR)/model/checkpoints/best.pt \
		--out $(PHOTO_DIR)/eval --tasks 1

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

clean:
	rm -rf $(DEMO_DIR) $(PHOTO_DIR) .pytest_cache
