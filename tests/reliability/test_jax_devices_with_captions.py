"""Under JAX, `--devices 2` reproduces a one-device run with caption files (issue #23, item 20).

JAX's `fit` reads a first batch through an iterator of its own (and
prefetches on it) before training starts; all iterators of one `tf.data`
pipeline share the shuffle's seed generator, so the training order depended
on how far that first iterator had run, a race that two devices lost more
often. With identical images only the order of the one captioned image
shows, which is why captions made the runs differ. The pipeline is now
rebuilt for each iterator under JAX (`DataParallelDevices.dataset`).

A second cause showed on a fresh machine only: the four identical images
share one latent-cache entry, and the first run (one device) encoded them
with four different sets of variants while the later runs read the one
stored set. An image's variants are now seeded by its own contents
(tests/datasets/test_latent_cache.py), and each run of this test starts
from an empty cache of its own.

Each run is a fresh `python -m studio` process (devices are fixed when JAX
starts); JAX compiles for minutes on a busy CPU, hence `large`.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("jax")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAPTIONS = "a photo of {} on a table\n{} in the garden\n"
# float32 round-off of the devices' sums; another batch moves losses by ~1e-3.
TOLERANCE = 1e-5
# Two data-parallel runs: the old failure was a race (most runs lost it).
REPEATS = 2


def _circles(folder):
    folder.mkdir()
    for index in range(4):
        image = Image.new("RGB", (64, 64), (255, 255, 255))
        ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill=(220, 20, 20))
        image.save(folder / f"{index}.png")
    (folder / "0.txt").write_text(CAPTIONS)


def _losses(workspace, devices, name):
    # The run's own latent cache: the first run fills it, the others read it.
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               KERAS_HOME=str(workspace / "keras-home"))
    env.pop("XLA_FLAGS", None)
    out = workspace / name
    result = subprocess.run(
        [sys.executable, "-m", "studio", "train", "textual-inversion", "--model", "tiny-shapes",
         "--data", str(workspace / "circles"), "--token", "<ts>", "--init-word", "circle",
         "--steps", "3", "--lr", "1e-12", "--latent-variants", "2", "--batch-size", "2",
         "--devices", str(devices), "--log-every", "1", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "progress.jsonl") as file:
        return [json.loads(line)["loss"] for line in file]


@pytest.mark.large
def test_two_jax_devices_reproduce_one_with_a_caption_file(tmp_path):
    _circles(tmp_path / "circles")
    one = _losses(tmp_path, 1, "one")
    assert len(one) == 3
    for repeat in range(REPEATS):
        two = _losses(tmp_path, 2, f"two-{repeat}")
        np.testing.assert_allclose(two, one, rtol=TOLERANCE)
