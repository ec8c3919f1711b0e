# Lobby's two commands: `make run` and `make test`. Everything else here serves them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?= -n auto

.PHONY: run test system-packages browser-packages python-check

## make run: set everything up, migrate the SQLite database, start Lobby on http://127.0.0.1:5000
## (`make run PORT=8080` serves elsewhere; BASE_URL follows HOST and PORT unless it is set)
run: export BASE_URL ?= http://$(HOST):$(PORT)
run: system-packages $(VENV)/.runtime-installed
	$(BIN)/flask db upgrade
	@$(BIN)/flask setup-code
	$(BIN)/flask run --host $(HOST) --port $(PORT)

## make test: set everything up and run the whole suite (PostgreSQL too when TEST_DATABASE_URL is set)
test: system-packages browser-packages $(VENV)/.dev-installed
	$(BIN)/pytest $(PYTEST_ARGS)

python-check:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Lobby needs Python 3.11 or newer as '$(PYTHON)' (set PYTHON=... to choose another)."; exit 1; }

$(VENV)/bin/python: | python-check
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

# Debian packages: installed when missing, as root or through password-less sudo
# (waiting up to 5 minutes for another apt run, e.g. unattended upgrades, to finish).
define apt_install
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	  echo "Lobby needs the Debian package(s) $(1): run 'sudo apt-get install $(1)'."; exit 1; fi; \
	$$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq $(1) >/dev/null
endef

# pysaml2 verifies XML signatures with the xmlsec1 program.
system-packages:
	@command -v xmlsec1 >/dev/null || { echo "Installing xmlsec1 ..."; $(call apt_install,xmlsec1); }

# The browser tests drive Debian's Chromium; without it they skip and say why.
browser-packages:
	@command -v chromium >/dev/null || { echo "Installing chromium for the browser tests ..."; \
	  $(call apt_install,chromium) || echo "chromium is not installed: the browser tests will be skipped."; }
