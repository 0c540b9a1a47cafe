# Two entry points for a fresh clone (see README): `make demo` and `make test`.
# Both create .venv and install everything first; nothing else is needed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := out/sample
SAMPLE_SEQ := $(SAMPLE)/sequences/00

.PHONY: setup demo test clean

$(STAMP): setup.py requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps geffnet==1.0.2
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded default: generate a synthetic KITTI-format stereo frame,
# run the shipped model on it, write labels and a picture to out/demo.
demo: $(STAMP)
	$(VENV)/bin/occdepth-synth --out $(SAMPLE) --sequences 00 --frames 1 --seed 7
	$(VENV)/bin/occdepth-infer --left $(SAMPLE_SEQ)/image_2/000000.png --right $(SAMPLE_SEQ)/image_3/000000.png \
		--calib $(SAMPLE_SEQ)/calib.txt --out out/demo

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) out
