"""Run folders written before the trainer base (`DiffusionTrainer`) still resume, to the same result.

`fixtures/old_runs/` holds a textual-inversion run and a DreamBooth LoRA run
(with prior preservation) on `tiny-shapes`, stopped after 2 of 4 steps by
the code of commit 649d6ac (`FrozenPolicyTrainer`), and what the same
commands wrote when run for 4 steps without a stop (`expected/`). The
runs were made with:

    studio train textual-inversion --model tiny-shapes --data data --token "<blob>" \\
        --init-word square --steps 2 --save-every 1 --log-every 1 --latent-variants 2 \\
        --cache-dir cache --out ti_stopped
    studio train dreambooth --model tiny-shapes --data data \\
        --instance-prompt "a photo of sks square" --class-prompt "a photo of a square" \\
        --num-class-images 2 --class-image-steps 2 --lora-rank 2 --save-every 1 \\
        --log-every 1 --latent-variants 2 --cache-dir cache --steps 2 --out db_stopped

`cache/` holds the latent-cache entries those runs wrote (the old code's
variants, made again with it): a resumed run reads them, as it does on the
machine that started it. With the cache cleared, a run resumes on the
variants of today's seeding (by each image's own contents), which the old
code did not use, so the result would differ.

Checkpoints restore variables by order and shape, so a trainer that makes
its variables in another order fails here, or continues from wrong values.
"""

import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from studio.cli.main import main

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "old_runs")


@pytest.fixture
def old_runs(tmp_path, monkeypatch):
    """A copy of the fixtures as the working folder (the runs' data paths are relative)."""
    folder = tmp_path / "old_runs"
    shutil.copytree(FIXTURES, folder)
    monkeypatch.chdir(folder)
    return folder


def assert_same_tensors(path, expected_path):
    tensors, expected = load_file(str(path)), load_file(str(expected_path))
    assert sorted(tensors) == sorted(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(tensors[name], values, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.tensorflow_only
def test_old_textual_inversion_run_resumes_to_the_uninterrupted_result(old_runs):
    argv = ["train", "textual-inversion", "--out", "ti_stopped", "--steps", "4", "--resume",
            "--cache-dir", "cache"]  # fmt: skip
    assert main(argv) == 0
    assert_same_tensors(
        old_runs / "ti_stopped" / "embedding.safetensors",
        old_runs / "expected" / "ti_embedding.safetensors",
    )


@pytest.mark.tensorflow_only
def test_old_dreambooth_lora_run_resumes_to_the_uninterrupted_result(old_runs):
    argv = ["train", "dreambooth", "--out", "db_stopped", "--steps", "4", "--resume",
            "--cache-dir", "cache"]  # fmt: skip
    assert main(argv) == 0
    assert_same_tensors(
        old_runs / "db_stopped" / "lora.safetensors",
        old_runs / "expected" / "db_lora.safetensors",
    )
