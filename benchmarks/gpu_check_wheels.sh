#!/usr/bin/env bash
# Downloads the wheels the GPU machine lacks for benchmarks/gpu_check.py into
# .whl/ (ignored by git), prints their total size and the device command.
#
# The GPU machine (see its KINDS.md) has Python 3.12.3, PyTorch, JAX (CUDA),
# transformers, tokenizers, safetensors, peft, accelerate, regex, h5py, rich,
# ml-dtypes, absl-py, Pillow, huggingface-hub, ... but not Keras, keras-hub,
# diffusers or ftfy. What they need beyond that: namex, optree (binary: the
# cp312 manylinux x86_64 wheel), wcwidth, importlib-metadata. Keras,
# keras-hub (the SD3 rows' MMDiT; it imports TensorFlow, tensorflow-text and
# kagglehub only where they are installed), diffusers and ftfy are pinned to
# the versions this repository is tested with. The CLIP vocabulary is not
# needed: the check uses the byte-level tokenizer.
#
# Usage (from the repository root): bash benchmarks/gpu_check_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEST=.whl
mkdir -p "$DEST"
PURE="keras==3.15.1 keras-hub==0.32.0 diffusers==0.42.1 ftfy==6.3.1 namex==0.1.0 importlib-metadata==10.2.0"
BINARY="optree==0.20.0 wcwidth==0.9.4"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$DEST" $PURE
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$DEST" \
    --python-version 3.12 --implementation cp --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 $BINARY
ls -l "$DEST"
echo "wheels: $(du -cb "$DEST"/*.whl | tail -1 | cut -f1) bytes"
echo "tracked + untracked files: $(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1) bytes"
cat <<'EOF'
Device commands (run tool, carry [".whl"], timeout_s 600), one call each:
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 KERAS_BACKEND=jax python3 benchmarks/gpu_check.py --family sd --budget-s 450 --out $OUT/gpu_check.json 2>&1 | tee $OUT/gpu_check.log
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 KERAS_BACKEND=jax python3 benchmarks/gpu_check.py --family sdxl --family sd3 --budget-s 480 --out $OUT/gpu_check_xl.json 2>&1 | tee $OUT/gpu_check_xl.log
EOF
