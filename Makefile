# The two commands of the README: `make run` and `make test`. Everything they need is set up
# here, from a fresh clone, including the Debian packages the integration tests talk to.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# Every install takes the versions pinned here (this Makefile and deploy/install.sh), so two
# installs of one commit are the same software. `make lock` regenerates it from pyproject.toml.
LOCK := requirements.lock
LOCK_VENV := .lock-venv
export MAILBOT_HOME ?= $(CURDIR)/var

.PHONY: run test install lint typecheck pytest bench clean system-deps lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[dev]'
	touch $@

# Resolve pyproject.toml's ranges afresh in a throw-away venv and pin what was installed
# (runtime and dev dependencies; as constraints, pins a given install does not need are ignored).
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q '.[dev]'
	{ echo "# Pinned by 'make lock' from pyproject.toml; used as constraints by every install."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude mailbot; } > $(LOCK)
	rm -rf $(LOCK_VENV)

install: $(STAMP)

run: install
	$(BIN)/mailbot db upgrade
	$(BIN)/mailbot demo init
	@$(BIN)/mailbot demo howto
	exec $(BIN)/mailbot serve

lint: install
	$(BIN)/ruff check mailbot scheduler db tests bench
	$(BIN)/ruff format --check mailbot scheduler db tests bench

typecheck: install
	$(BIN)/mypy

# Debian packages the integration tests talk to for real (we are root on CI and dev machines).
# Postfix is preseeded to "No configuration": no /etc/postfix/main.cf, so the package starts no
# system Postfix on port 25; the tests run private ones (tests/support/postfix.py). python3-venv
# and systemd (systemd-analyze) are for the tests of deploy/; openssl makes the STARTTLS tests'
# self-signed certificates; prometheus brings promtool, which checks and unit-tests the example
# alert rules (deploy/prometheus-alerts.yml) and lints /metrics (its server is not used);
# postgresql-client's psql runs the ANALYZE recipe of docs/operations.md.
DEBIAN_PACKAGES := dovecot-imapd chromium fonts-ipaexfont-gothic poppler-utils postfix \
  python3-venv systemd openssl prometheus postgresql-client
# The packages' own services (Dovecot on 143, Prometheus on 9090) are neither started nor
# enabled: the tests run private instances, and `make test` must not leave a developer's machine
# serving IMAP or metrics. A policy-rc.d answering 101 is Debian's way to forbid service starts
# during an install (invoke-rc.d and deb-systemd-invoke both ask it); it is removed when the
# recipe's shell exits, also when the install fails or is interrupted (Ctrl-C), so that no
# later install on the machine is left unable to start its services.
POLICY_RC := /usr/sbin/policy-rc.d
# Afterwards, on a systemd machine, the units of every package this install added (recommended
# ones too: prometheus brings prometheus-node-exporter and its timers) are disabled, so that none
# starts at the next boot; packages that were there before are not touched.
UNIT_FILES := ^(/usr)?/lib/systemd/system/[^/@]+\.(service|socket|timer)$$
system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections; \
	  before=$$(mktemp); made=""; trap 'rm -f "$$before" $$made' EXIT; \
	  if [ ! -e $(POLICY_RC) ]; then made=$(POLICY_RC); \
	    printf '#!/bin/sh\nexit 101\n' > $(POLICY_RC); chmod 755 $(POLICY_RC); fi; \
	  dpkg-query -W -f='$${Package}\n' | sort > "$$before"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  status=$$?; \
	  if [ $$status -eq 0 ] && [ -d /run/systemd/system ]; then \
	    for p in $$(dpkg-query -W -f='$${Package}\n' | sort | comm -13 "$$before" -); do dpkg -L $$p; done \
	      | grep -E '$(UNIT_FILES)' | xargs -r -n1 basename | sort -u \
	      | xargs -r systemctl disable --quiet 2>/dev/null || true; fi; \
	  exit $$status; \
	fi

pytest: install system-deps
	$(BIN)/pytest

test: lint typecheck pytest

bench: install
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) $(LOCK_VENV) var .pytest_cache .mypy_cache .ruff_cache
