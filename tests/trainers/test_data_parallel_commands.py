"""`studio train textual-inversion|dreambooth --devices 2` end to end on 2 logical CPU devices.

Each data-parallel run is a fresh `python -m studio` process (devices are
fixed when a backend starts), on a machine without GPUs: the command
splits the CPU into two logical devices itself, under TensorFlow and JAX
alike. The run folders must look as single-device ones do, and (under
TensorFlow, which this process runs) hold the results of the same run on
one device, which runs here with eager steps. JAX spends minutes
compiling on 2 CPU cores, so its cases are large.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from studio.cli import train_command
from studio.cli.main import run_command as studio

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE_SIZE = 64
TOKEN = "<toy>"
BACKENDS = [
    pytest.param("tensorflow", id="tensorflow"),
    pytest.param("jax", marks=pytest.mark.large, id="jax"),
]
# "2 logical CPU devices" here; "2 GPUs" on a machine with them.
DATA_PARALLEL_MESSAGE = "Data-parallel training on 2 "
# float32 round-off of sums over the replicas; an example trained with
# other noise, or another batch, moves the results by ~1e-2.
TOLERANCE = 1e-5


def _single_gpu():
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU")) == 1


# Two GPUs (or more) hold the two devices, a machine without GPUs splits its
# CPU; one GPU can do neither.
pytestmark = [
    pytest.mark.tensorflow_only,
    pytest.mark.skipif(_single_gpu(), reason="2 devices need 2 GPUs or none"),
]


@pytest.fixture(scope="module", autouse=True)
def eager_steps(eager_compile, eager_tensorflow_functions):
    """Eager train steps and samples for the runs in this process, as in test_train_command.py."""
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    with pytest.MonkeyPatch.context() as patch, eager_tensorflow_functions():
        eager_compile(patch, TextualInversionTrainer, DreamBoothTrainer)
        yield


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, write_toy_images):
    root = tmp_path_factory.mktemp("data-parallel")
    write_toy_images(root / "images", 3, IMAGE_SIZE)
    return root


# `python -m studio`, with TensorFlow's functions run eagerly, as the
# single-device runs in this process do (`eager_steps`): tracing the
# distributed step and the sampling loop was most of each process's 40-50 s.
# The traced data-parallel step is tested in test_data_parallel_step.py.
EAGER_STUDIO = (
    "import sys, tensorflow as tf; tf.config.run_functions_eagerly(True); "
    "from studio.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


def studio_process(backend, *argv):
    """Runs the `studio` command line ARGV in a new process under `backend`; returns it."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    # The command must make the devices itself.
    env.pop("XLA_FLAGS", None)
    command = ["-c", EAGER_STUDIO] if backend == "tensorflow" else ["-m", "studio"]
    result = subprocess.run([sys.executable, *command, *argv], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result



def check_run_folder(run, result_file):
    """The layout of a single-device run with 2 checkpoints and a sample."""
    assert sorted(os.listdir(run / "checkpoints")) == ["step-000001", "step-000002"]
    for step in ("step-000001", "step-000002"):
        assert sorted(os.listdir(run / "checkpoints" / step)) == [
            "checkpoint.json", result_file, "training_state.npz"
        ]
    assert sorted(os.listdir(run / "samples")) == ["step-000002-0.png"]
    assert json.loads((run / "config.json").read_text())["devices"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert np.isfinite(summary["final_loss"])


def step_losses(run):
    lines = (run / "progress.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def skip_unless_tensorflow(backend):
    if backend != "tensorflow":
        pytest.skip("this process runs TensorFlow")


# --- Textual inversion ------------------------------------------------------


def textual_inversion_options(workspace, out):
    return [
        "train", "textual-inversion", "--out", str(workspace / out),
        "--cache-dir", str(workspace / "cache"), "--model", "tiny",
        "--data", str(workspace / "images"), "--token", TOKEN, "--init-word", "toy",
        "--batch-size", "2", "--steps", "2", "--save-every", "1", "--sample-every", "2",
        "--sample-steps", "2", "--sample-prompt", f"a photo of a {TOKEN}",
        "--latent-variants", "1",
    ]


@pytest.fixture(scope="module", params=BACKENDS)
def textual_inversion_run(request, workspace):
    backend = request.param
    out = f"ti-{backend}"
    result = studio_process(backend, *textual_inversion_options(workspace, out), "--devices", "2")
    return backend, result.stdout, workspace / out


def test_textual_inversion_on_two_devices(textual_inversion_run):
    from studio.embeddings import load_embedding

    _, stdout, run = textual_inversion_run
    assert DATA_PARALLEL_MESSAGE in stdout and "Trained 2 steps" in stdout
    check_run_folder(run, "embedding.safetensors")
    embedding = load_embedding(run / "embedding.safetensors")
    assert embedding.vectors[TOKEN].shape == (1, 32) and embedding.steps == 2


def test_textual_inversion_on_two_devices_trains_as_on_one(textual_inversion_run, workspace):
    from studio.embeddings import load_embedding

    backend, _, run = textual_inversion_run
    skip_unless_tensorflow(backend)
    assert studio(*textual_inversion_options(workspace, "ti-single")) == train_command.EXIT_OK
    single = workspace / "ti-single"
    np.testing.assert_allclose(step_losses(run), step_losses(single), atol=TOLERANCE)
    split = load_embedding(run / "embedding.safetensors").vectors[TOKEN]
    np.testing.assert_allclose(
        split, load_embedding(single / "embedding.safetensors").vectors[TOKEN], atol=TOLERANCE
    )
    # The second step moved the vectors far more than the tolerance: the
    # equality is not that of two runs that did nothing.
    first = run / "checkpoints" / "step-000001" / "embedding.safetensors"
    assert np.abs(split - load_embedding(first).vectors[TOKEN]).max() > 100 * TOLERANCE


def test_a_data_parallel_run_resumes_on_one_device(textual_inversion_run, workspace, capsys):
    backend, _, run = textual_inversion_run
    skip_unless_tensorflow(backend)
    code = studio(
        "train", "textual-inversion", "--out", str(run), "--resume", "--steps", "3",
        "--devices", "1", "--sample-every", "0",
    )
    assert code == train_command.EXIT_OK
    assert DATA_PARALLEL_MESSAGE not in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["resumed_from_step"] == 2
    assert json.loads((run / "config.json").read_text())["devices"] == 1


# --- DreamBooth -------------------------------------------------------------


def dreambooth_options(workspace, out):
    return [
        "train", "dreambooth", "--out", str(workspace / out),
        "--cache-dir", str(workspace / "cache"), "--model", "tiny",
        "--data", str(workspace / "images"), "--instance-prompt", "a photo of sks toy",
        # Batches of 1 subject and 1 class image: one device gets each.
        "--class-prompt", "a photo of a toy", "--num-class-images", "2",
        "--class-image-steps", "2", "--lora-rank", "2", "--steps", "2",
        "--save-every", "1", "--sample-every", "2", "--sample-steps", "2",
        "--sample-prompt", "a photo of sks toy", "--latent-variants", "1",
    ]


@pytest.fixture(scope="module", params=BACKENDS)
def dreambooth_run(request, workspace):
    backend = request.param
    out = f"dreambooth-{backend}"
    result = studio_process(backend, *dreambooth_options(workspace, out), "--devices", "2")
    return backend, result.stdout, workspace / out


def test_dreambooth_lora_on_two_devices(dreambooth_run):
    from studio.lora.lora_weights import LoRAWeights

    _, stdout, run = dreambooth_run
    assert DATA_PARALLEL_MESSAGE in stdout
    check_run_folder(run, "lora.safetensors")
    assert LoRAWeights.load(run / "lora.safetensors").metadata["ss_steps"] == "2"


def test_dreambooth_on_two_devices_trains_as_on_one(dreambooth_run, workspace):
    from studio.lora.lora_weights import LoRAWeights

    backend, _, run = dreambooth_run
    skip_unless_tensorflow(backend)
    code = studio(
        *dreambooth_options(workspace, "dreambooth-single"),
        # The same class images, without generating them again.
        "--class-data", str(run / "class_images"),
    )
    assert code == train_command.EXIT_OK
    single = workspace / "dreambooth-single"
    np.testing.assert_allclose(step_losses(run), step_losses(single), atol=TOLERANCE)
    split = LoRAWeights.load(run / "lora.safetensors").modules
    one = LoRAWeights.load(single / "lora.safetensors").modules
    assert split.keys() == one.keys()
    for name in split:
        for a, b in zip(split[name][:2], one[name][:2]):
            np.testing.assert_allclose(a, b, atol=TOLERANCE, err_msg=name)
    # The second step moved the LoRA matrices more than the tolerance (Adam
    # moves a weight by about the learning rate, 1e-4, per step).
    first = LoRAWeights.load(run / "checkpoints" / "step-000001" / "lora.safetensors").modules
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for name in split for a, b in zip(split[name][:2], first[name][:2]))
    assert moved > 5 * TOLERANCE


def test_a_batch_that_does_not_split_evenly_is_refused(workspace):
    with pytest.raises(ValueError, match=r"Received: --devices 2 and a batch of 3 \(--batch-size 3\)"):
        studio(*textual_inversion_options(workspace, "uneven"), "--batch-size", "3",
               "--devices", "2")
    with pytest.raises(ValueError, match=r"a batch of 2 \(--batch-size 1 subject images and "):
        studio(*dreambooth_options(workspace, "uneven-db"), "--devices", "4")
