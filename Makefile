# Two entry points for a fresh clone (see README): `make demo` and `make test`.
# Both create .venv and install everything first; nothing else is needed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := out/sample
SAMPLE_SEQ := $(SAMPLE)/sequences/00

.PHONY: setup demo infer-sample test clean default-model int8-model

# Reproduce models/default.safetensors and the model card's comparison (docs/MODEL_CARD.md):
# synthetic data, the default (Stereo-SFA) and the mean-fusion ablation trained alike, the
# default's class prior (models/default.class_prior.yaml),
# then both and the SGBM baseline scored on the held-out sequence 08. About 4 hours on 2 cores.
DATA ?= out/synth
RUNS ?= out/runs
TRAIN_SEQS := 00 01 02 03 04 05
TRAIN_ARGS := --data $(DATA) --train $(TRAIN_SEQS) --val 06 --preset compact --epochs 6 --threads 2 --seed 42

# torch first (TORCH: a requirement or a wheel file; on a Jetson NVIDIA's JetPack wheel), then
# requirements.txt, whose markers leave out the x86-64-only wheels elsewhere (docs/JETSON.md).
# VENV_ARGS=--system-site-packages lets the venv see a system ROS 2 / TensorRT (Jetson).
TORCH ?= torch==2.13.0
VENV_ARGS ?=

$(STAMP): setup.py requirements.txt occdepth_ros/ops/csrc/svs_extension.cpp export/plugin/src/svs_cpu.cpp
	$(PYTHON) -m venv $(VENV_ARGS) $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q --no-deps geffnet==1.0.2
	@# x86-64 takes onnxruntime-openvino, which installs the same module: drop a plain onnxruntime first
	if [ "$$(uname -m)" = x86_64 ]; then $(PY) -m pip uninstall -q -y onnxruntime; fi
	$(PY) -m pip install -q -r requirements.txt
	@# builds the lift's native CPU kernel (a torch C++ extension) against the torch above:
	@# no build isolation, so pip never fetches a second torch; it then needs a setuptools that
	@# builds editable wheels itself. OCCDEPTH_MARCH_NATIVE=1 tunes the kernel to this CPU.
	$(PY) -m pip install -q "setuptools>=70.1"
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded default: a synthetic KITTI-format stereo sequence becomes a
# rosbag2, is replayed over DDS into occdepth_node (shipped model), and the node's rate,
# latency and drops are printed; a picture of the last voxel grid goes to out/demo/demo.png.
demo: $(STAMP)
	$(VENV)/bin/occdepth-demo --frames 80 --out out/demo

# One stereo pair through the model without ROS: labels, .label file and a picture.
infer-sample: $(STAMP)
	$(VENV)/bin/occdepth-synth --out $(SAMPLE) --sequences 00 --frames 1 --seed 7
	$(VENV)/bin/occdepth-infer --left $(SAMPLE_SEQ)/image_2/000000.png --right $(SAMPLE_SEQ)/image_3/000000.png \
		--calib $(SAMPLE_SEQ)/calib.txt --out out/infer

# The INT8 graph of the shipped model (docs/INT8.md): exported, calibrated on 16 frames of
# training world 00 and quantised by NNCF, into the cache the node reads (precision auto/int8).
int8-model: $(STAMP)
	$(PY) -m occdepth_export.quantize

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) out

default-model: $(STAMP)
	@# the training and validation worlds carry the labels the default was trained on (--thin-ground)
	$(VENV)/bin/occdepth-synth --out $(DATA) --sequences $(TRAIN_SEQS) --frames 80 --seed 1 --voxel-every 1 --workers 2 --thin-ground
	$(VENV)/bin/occdepth-synth --out $(DATA) --sequences 06 --frames 40 --seed 1 --voxel-every 4 --workers 2 --thin-ground
	$(VENV)/bin/occdepth-synth --out $(DATA) --sequences 08 --frames 100 --seed 1 --voxel-every 5 --workers 2
	$(VENV)/bin/occdepth-train $(TRAIN_ARGS) --out $(RUNS)/default --export $(RUNS)/default.safetensors
	$(VENV)/bin/occdepth-train $(TRAIN_ARGS) --fusion mean --out $(RUNS)/mean_fusion --export $(RUNS)/mean_fusion.safetensors
	$(VENV)/bin/occdepth-class-prior --data $(DATA) --sequences $(TRAIN_SEQS) --frame-stride 2 --checkpoint $(RUNS)/default.safetensors --out $(RUNS)/default.class_prior.yaml
	$(VENV)/bin/occdepth-eval --data $(DATA) --sequences 08 --checkpoint $(RUNS)/default.safetensors --json $(RUNS)/eval_default.json
	$(VENV)/bin/occdepth-eval --data $(DATA) --sequences 08 --checkpoint $(RUNS)/mean_fusion.safetensors --json $(RUNS)/eval_mean_fusion.json
	$(VENV)/bin/occdepth-eval --data $(DATA) --sequences 08 --baseline sgbm --json $(RUNS)/eval_sgbm.json
