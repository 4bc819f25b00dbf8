# The two commands of the README: `make demo` and `make test`. Both set up .venv first when needed.
PY := .venv/bin/python
# Setup reruns only when what it installs changes.
SETUP_INPUTS := tools/env/setup.sh tools/env/build_wheel.py $(wildcard tools/env/*.patch) \
	$(wildcard requirements/*.txt) pyproject.toml setup.py $(wildcard sau_core/csrc/*)
STAMP := .venv/.sau-zoo-setup

.PHONY: setup demo test
setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	bash tools/env/setup.sh
	touch $@

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest
