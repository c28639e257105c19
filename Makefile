# Set-up and everyday tasks. Every target installs what it needs first, so each works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := espeak-ng flite sox fortunes wamerican

.PHONY: install system-deps test test-slow demo clean

# Debian packages for making speech (espeak-ng, flite) and sentences (fortunes, wamerican) for tests and
# the demo corpus; skipped when already present.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins the CPU build of torch; anything looser downloads a multi-GB CUDA build
	$(PY) -m pip install -q -c constraints.txt -e '.[export,validate,plots,dev]'
	touch $@

install: system-deps $(VENV)/.installed

test: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
