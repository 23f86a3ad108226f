"""A run killed (SIGKILL) inside each of its writes resumes to the result of an uninterrupted run.

Issue 23, acceptance 3: nothing the studio writes is ever half written.
For each write point (checkpoint, embedding, LoRA, summary, progress line,
sample image) a `studio train` process kills itself in the middle of one
write (`kill_at_write.py`); `--resume` then finishes the run, whose result
file must equal, byte for byte, that of a run never interrupted, with no
temporary file left anywhere in the run folder and each step once in
`progress.jsonl`.

Each killed run is a subprocess (~10 s of TensorFlow start-up); the
uninterrupted runs and the resumes run in this process.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from studio.cli.main import main
from studio.trainers.run.run_directory import RunDirectory

pytestmark = pytest.mark.tensorflow_only

KILL_SCRIPT = os.path.join(os.path.dirname(__file__), "kill_at_write.py")
STEPS = 4


@pytest.fixture(scope="module", autouse=True)
def eager_trainers(eager_tensorflow_functions):
    """As `kill_at_write.run_eagerly` does in the killed process."""
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    with pytest.MonkeyPatch.context() as patch, eager_tensorflow_functions():
        for trainer_class in (TextualInversionTrainer, DreamBoothTrainer):
            original = trainer_class.compile

            def compile(self, optimizer="adam", _original=original, **kwargs):
                kwargs.pop("jit_compile", None)
                _original(self, optimizer, run_eagerly=True, jit_compile=False, **kwargs)

            patch.setattr(trainer_class, "compile", compile)
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("kill")
    images = root / "circles"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"circle{index}.png")
    return root


def textual_inversion_options(workspace):
    return [
        "train", "textual-inversion", "--model", "tiny-shapes", "--data",
        str(workspace / "circles"), "--token", "<kc>", "--init-word", "circle",
        "--steps", str(STEPS), "--save-every", "2", "--sample-every", "2",
        "--sample-steps", "2", "--log-every", "3", "--latent-variants", "2",
        "--cache-dir", str(workspace / "cache"),
    ]


def dreambooth_options(workspace):
    return [
        "train", "dreambooth", "--model", "tiny-shapes", "--data",
        str(workspace / "circles"), "--instance-prompt", "a photo of sks circle",
        "--lora-rank", "4", "--steps", str(STEPS), "--save-every", "2",
        "--sample-every", "2", "--sample-steps", "2", "--log-every", "3",
        "--latent-variants", "2", "--cache-dir", str(workspace / "cache"),
    ]


METHODS = {
    "textual_inversion": (textual_inversion_options, "embedding.safetensors"),
    "dreambooth": (dreambooth_options, "lora.safetensors"),
}


@pytest.fixture(scope="module")
def uninterrupted(workspace):
    """`uninterrupted(method)` -> the result file's bytes of a run never killed."""
    results = {}

    def result(method):
        if method not in results:
            options, name = METHODS[method]
            out = workspace / f"whole-{method}"
            assert main([*options(workspace), "--out", str(out)]) == 0
            results[method] = tensor_file(out / name)
        return results[method]

    return result


def tensor_file(path):
    """A `.safetensors` file as (header dict, data bytes): its metadata's key
    order may differ between processes, its tensors must be bit-identical."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def temporaries(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, folders, files in os.walk(folder)
        for name in folders + files
        if ".partial" in name or name.startswith(".step-")
    )


# (method, write point, k: which write of that kind is killed). Each kill is a
# process of its own (~30 s on 2 cores): the checkpoint and the LoRA run by
# default, every other write point in the `large` step.
large = pytest.mark.large
KILLS = [
    ("textual_inversion", "checkpoint", 2),  # step 4's checkpoint: resumes from step 2
    pytest.param("textual_inversion", "embedding", 1, marks=large),  # step 2's checkpoint
    pytest.param("textual_inversion", "embedding", 3, marks=large),  # the final embedding
    pytest.param("textual_inversion", "summary", 1, marks=large),
    pytest.param("textual_inversion", "progress", 3, marks=large),  # half a line at step 3
    pytest.param("textual_inversion", "sample", 1, marks=large),  # step 2's first sample
    ("dreambooth", "lora", 2),  # inside step 4's checkpoint
]


@pytest.mark.parametrize("method, point, k", KILLS)
def test_a_run_killed_inside_a_write_resumes_to_the_same_result(
    workspace, uninterrupted, method, point, k
):
    expected = uninterrupted(method)
    options, name = METHODS[method]
    out = workspace / f"killed-{method}-{point}-{k}"
    killed = subprocess.run(
        [sys.executable, KILL_SCRIPT, point, str(k), *options(workspace), "--out", str(out)],
        capture_output=True, text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    if point != "progress":
        assert temporaries(out), "the kill should leave its temporary behind"

    assert main([*options(workspace), "--out", str(out), "--resume"]) == 0

    assert tensor_file(out / name) == expected
    assert temporaries(out) == []
    run = RunDirectory(out)
    with open(run.progress_path, encoding="utf-8") as file:
        steps = [json.loads(line).get("step") for line in file]
    assert [step for step in steps if step is not None] == list(range(1, STEPS + 1))
    with open(run.summary_path, encoding="utf-8") as file:
        summary = json.load(file, parse_constant=lambda constant: pytest.fail(constant))
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    assert [step for step, _ in run.checkpoint_folders()][-1] == STEPS
