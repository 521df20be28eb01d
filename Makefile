# The newcomer's entry points. Each target creates .venv and installs the package when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo
# the first synthetic test user, and one of its clutter videos (shell expressions: the data exists only mid-recipe)
DEMO_USER = $$(ls $(DEMO_DIR)/data/test | head -n 1)
DEMO_VIDEO = $$(find $(DEMO_DIR)/data/test/$(DEMO_USER) -mindepth 3 -maxdepth 3 -path '*/clutter/*' | sort | head -n 1)

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when pyproject.toml changes; the stamp records the last install.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The main job on the embedded synthetic dataset: generate it (once) and summarize it, meta-train the CPU demo
# recipe, personalize a test user's recognizer and run it on one video (an annotated copy and a probability plot),
# evaluate the test users (ORBIT protocol).
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

lint: $(VENV)/.installed
	$(BIN)/ruff check orbit_lite tests benchmarks
	$(BIN)/ruff format --check orbit_lite tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/data_throughput.py --json

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
