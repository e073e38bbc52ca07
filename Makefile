# payments-lakehouse — the two commands a user needs are `make demo` and `make test`.
# Both depend on `make setup`, which is idempotent: each step is skipped when its stamp is newer
# than what it was built from.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
BUILD  := build
JARS   := $(BUILD)/jars

.PHONY: setup os-packages demo test test-unit test-integration lint typecheck constraints stack-up stack-down clean

setup: os-packages $(VENV)/.installed $(JARS)/.resolved

os-packages:
	@scripts/install_os_packages.sh

$(VENV)/.installed: setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip check
	@touch $@

$(JARS)/.resolved: jvm/spark/pom.xml jvm/kafka/pom.xml jvm/debezium/pom.xml scripts/resolve_jars.py $(VENV)/.installed
	$(PY) scripts/resolve_jars.py --out $(JARS)
	@touch $@

demo: setup
	$(VENV)/bin/lakehouse demo

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m unit

test-integration: setup
	$(PY) -m pytest -m integration

lint: setup
	$(VENV)/bin/ruff check lakehouse jobs tests bench scripts

typecheck: setup
	$(VENV)/bin/mypy lakehouse

# Re-resolve the pinned set after changing setup.py (then run `make setup` and the tests).
constraints:
	rm -rf /tmp/lakehouse-constraints-venv && $(PYTHON) -m venv /tmp/lakehouse-constraints-venv
	/tmp/lakehouse-constraints-venv/bin/pip install -q -e '.[dev]'
	/tmp/lakehouse-constraints-venv/bin/pip freeze | grep -v -e '^-e' -e '^#' -e 'payments-lakehouse' > constraints.txt.new
	@echo "review constraints.txt.new and move it over constraints.txt"

stack-up: setup
	$(VENV)/bin/lakehouse stack up

stack-down:
	$(VENV)/bin/lakehouse stack down

clean:
	-$(VENV)/bin/lakehouse stack down
	rm -rf $(BUILD) $(VENV) .state
