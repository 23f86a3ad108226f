"""Issue 23, items 1-8: a user's error is one line (exit 2), a bug keeps its traceback.

Read-only and full disks are tmpfs mounts (root only: skipped elsewhere).
Commands run in-process through `studio.cli.main.main`.
"""

import errno
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from studio.cli.main import main
from studio.errors import InvalidInputError

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.usefixtures("eager_tensorflow")]

IMAGE_SIZE = 64
TI = ("train", "textual-inversion", "--model", "tiny", "--token", "<toy>", "--init-word", "toy")


def write_images(folder, count=2, size=IMAGE_SIZE):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"toy{index}.png")
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-errors")
    write_images(root / "images")
    return root


@pytest.fixture
def mount_tmpfs(tmp_path):
    """`mount_tmpfs(name, options)`: a tmpfs folder in tmp_path, unmounted after the test."""
    mounted = []

    def mount(name, options):
        folder = tmp_path / name
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def read_only(mount_tmpfs):
    return mount_tmpfs("ro", "ro,size=1m")


@pytest.fixture
def full_disk(mount_tmpfs):
    """A tmpfs without a free byte: a filler file takes all its space."""
    folder = mount_tmpfs("full", "size=1m")
    with open(folder / "filler", "wb", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return folder


def run_studio(capsys, *argv):
    """(exit code, stderr) of `studio ARGV`, run in-process."""
    code = main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, command, *words):
    """Exit code 2 and one `studio COMMAND: error: ...` line naming `words`."""
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"studio {command}: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, folders, names in os.walk(folder) for name in names + folders)


def write_embedding(path):
    from studio.embeddings import TextualInversionEmbedding
    from studio.embeddings.embedding_files import save_embedding

    embedding = TextualInversionEmbedding({"<toy>": np.ones((1, 32), "float32")})
    save_embedding(embedding, path)
    return path


# --- What is a user error ---------------------------------------------------


@pytest.mark.parametrize("error, user", [
    (InvalidInputError("--x must be 1. Received: 2"), True),
    (ValueError("operands could not be broadcast together"), False),
    (OSError(errno.ENOSPC, "No space left on device", "out/x.png"), True),
    (OSError(errno.EROFS, "Read-only file system", "out"), True),
    (FileExistsError(errno.EEXIST, "File exists", "out"), True),
    (OSError(errno.EINVAL, "Invalid argument"), False),
    (TypeError("unsupported operand"), False),
])
def test_only_user_errors_are_one_line(monkeypatch, capsys, error, user):
    from studio.cli import generate_command

    def fail(args):
        raise error

    monkeypatch.setattr(generate_command, "run", fail)
    argv = ["generate", "--prompt", "x", "--out", "o"]
    if not user:
        with pytest.raises(type(error)):
            main(argv)
        return
    code, err = run_studio(capsys, *argv)
    assert_one_line_error(code, err, "generate")
    with pytest.raises(type(error)):
        main(["--debug", *argv])


def test_an_os_error_names_the_path_and_the_fix(monkeypatch, capsys):
    from studio.cli import generate_command

    def fail(args):
        raise OSError(errno.ENOSPC, "No space left on device", "out/00000-1.png")

    monkeypatch.setattr(generate_command, "run", fail)
    code, err = run_studio(capsys, "generate", "--prompt", "x", "--out", "out")
    assert_one_line_error(code, err, "generate", "out/00000-1.png", "disk is full",
                          "free some space")


# --- 1. Read-only output ------------------------------------------------------


def test_training_into_a_read_only_folder(workspace, read_only, capsys):
    code, err = run_studio(capsys, *TI, "--data", workspace / "images", "--steps", 2,
                           "--cache-dir", workspace / "cache", "--out", read_only / "run")
    assert_one_line_error(code, err, "train textual-inversion", str(read_only / "run"),
                          "read-only")
    assert os.listdir(read_only) == []


def test_dreambooth_into_a_read_only_folder(workspace, read_only, capsys):
    code, err = run_studio(
        capsys, "train", "dreambooth", "--model", "tiny", "--data", workspace / "images",
        "--instance-prompt", "a photo of sks toy", "--lora-rank", 2, "--steps", 2,
        "--cache-dir", workspace / "cache", "--out", read_only / "db")
    assert_one_line_error(code, err, "train dreambooth", str(read_only / "db"), "read-only")
    assert os.listdir(read_only) == []


def test_converting_an_embedding_into_a_read_only_folder(tmp_path, read_only, capsys):
    source = write_embedding(tmp_path / "in.safetensors")
    code, err = run_studio(capsys, "embeddings", "convert", source, read_only / "x.safetensors",
                           "--format", "diffusers")
    assert_one_line_error(code, err, "embeddings convert", str(read_only), "read-only")
    assert os.listdir(read_only) == []


# --- 2. Full disk -------------------------------------------------------------


def test_training_on_a_full_disk_leaves_no_run_folder(workspace, full_disk, capsys):
    code, err = run_studio(capsys, *TI, "--data", workspace / "images", "--steps", 2,
                           "--cache-dir", workspace / "cache", "--out", full_disk / "run")
    assert_one_line_error(code, err, "train textual-inversion", str(full_disk / "run"),
                          "disk is full", "Nothing of the run was kept")
    assert files_under(full_disk) == ["filler"]


def test_dreambooth_on_a_full_disk_leaves_no_run_folder(workspace, full_disk, capsys):
    code, err = run_studio(
        capsys, "train", "dreambooth", "--model", "tiny", "--data", workspace / "images",
        "--instance-prompt", "a photo of sks toy", "--lora-rank", 2, "--steps", 2,
        "--save-every", 1, "--cache-dir", workspace / "cache", "--out", full_disk / "db")
    assert_one_line_error(code, err, "train dreambooth", str(full_disk / "db"), "disk is full")
    assert files_under(full_disk) == ["filler"]


def test_a_run_that_fills_the_disk_keeps_its_checkpoints_and_says_how_to_resume(tmp_path):
    from studio.errors import OutputLocationError
    from studio.trainers.run.run_directory import RunDirectory
    from studio.trainers.run_setup import removed_on_user_error

    out = tmp_path / "run"
    with pytest.raises(OutputLocationError, match=r"--resume --out .*run` continues from step 3"):
        with removed_on_user_error(out, resume=False):
            RunDirectory(out).create({"method": "textual_inversion"})
            os.makedirs(out / "checkpoints" / "step-000003")
            (out / "checkpoints" / "step-000003" / "checkpoint.json").write_text("{}")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (out / "config.json").exists()


def test_a_bug_during_a_run_keeps_its_folder_and_traceback(tmp_path):
    from studio.trainers.run.run_directory import RunDirectory
    from studio.trainers.run_setup import removed_on_user_error

    out = tmp_path / "run"
    with pytest.raises(ZeroDivisionError):
        with removed_on_user_error(out, resume=False):
            RunDirectory(out).create({"method": "textual_inversion"})
            1 / 0
    assert (out / "config.json").exists()


def test_converting_an_embedding_onto_a_full_disk(tmp_path, full_disk, capsys):
    source = write_embedding(tmp_path / "in.safetensors")
    code, err = run_studio(capsys, "embeddings", "convert", source, full_disk / "x.safetensors",
                           "--format", "diffusers")
    assert_one_line_error(code, err, "embeddings convert", str(full_disk), "disk is full")
    assert files_under(full_disk) == ["filler"]


def test_data_check_onto_a_full_disk(workspace, full_disk, capsys):
    code, err = run_studio(capsys, "data", "check", workspace / "images", "--resolution", 64,
                           "--out", full_disk / "sheet.png")
    assert_one_line_error(code, err, "data check", str(full_disk), "disk is full")
    assert files_under(full_disk) == ["filler"]


def test_generate_onto_a_full_disk(full_disk, capsys):
    code, err = run_studio(capsys, "generate", "--model", "tiny", "--prompt", "a toy",
                           "--steps", 1, "--seed", 1, "--out", full_disk / "images")
    assert_one_line_error(code, err, "generate", str(full_disk), "disk is full")
    assert files_under(full_disk) == ["filler"]


# --- 3. Existing output -------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ("models", "export", "tiny", "--format", "diffusers"),
    ("models", "import", "no-such-model"),
])
def test_models_into_a_folder_that_holds_a_file(tmp_path, capsys, argv):
    out = tmp_path / "ne"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = run_studio(capsys, *argv, "--out", out)
    assert_one_line_error(code, err, " ".join(argv[:2]), str(out), "--overwrite")
    assert files_under(tmp_path) == ["ne", os.path.join("ne", "keep.txt")]


# --- 4, 5. Rejected settings leave no run folder --------------------------------


@pytest.mark.parametrize("argv, message", [
    (("--save-every", 0), "--save-every must be at least 1. Received: 0"),
    (("--keep-checkpoints", 0), "--keep-checkpoints must be at least 1. Received: 0"),
    (("--log-every", 0), "--log-every must be at least 1. Received: 0"),
    (("--resolution", 0), "--resolution must be a positive multiple of 8"),
    (("--resolution", -64), "--resolution must be a positive multiple of 8"),
    (("--resolution", 60), "Received: --resolution 60"),
])
def test_a_rejected_setting_leaves_no_run_folder(workspace, tmp_path, capsys, argv, message):
    code, err = run_studio(capsys, *TI, "--data", workspace / "images", *argv,
                           "--out", tmp_path / "o")
    assert_one_line_error(code, err, "train textual-inversion", message)
    assert not (tmp_path / "o").exists()


def test_a_rejected_dreambooth_setting_leaves_no_run_folder(workspace, tmp_path, capsys):
    code, err = run_studio(
        capsys, "train", "dreambooth", "--model", "tiny", "--data", workspace / "images",
        "--instance-prompt", "a photo of sks toy", "--save-every", 0, "--out", tmp_path / "db")
    assert_one_line_error(code, err, "train dreambooth", "--save-every must be at least 1")
    assert not (tmp_path / "db").exists()


def test_a_resolution_the_model_cannot_take():
    from studio.models import StableDiffusionBackbone
    from studio.trainers import TextualInversionSettings

    class Model:  # As a backbone with 16 pixels per latent would be.
        image_size, latent_downsampling = 64, 16

    settings = TextualInversionSettings(model="tiny", data="d", token="<t>", init_word="t",
                                        resolution=40).validate()
    with pytest.raises(InvalidInputError, match="multiple of 16 for tiny"):
        settings.training_resolution(Model())
    assert settings.training_resolution(StableDiffusionBackbone.from_preset("tiny")) == 40


# --- 6-8. One trained run: warnings, bad images, a resume with a new lr ---------


@pytest.fixture(scope="module")
def quick_steps():
    """The trainer's steps run eagerly: tracing costs more than these steps."""
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    original = TextualInversionTrainer.compile

    def compile(self, optimizer="adam", **kwargs):
        kwargs.pop("jit_compile", None)
        original(self, optimizer, **kwargs, run_eagerly=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TextualInversionTrainer, "compile", compile)
        yield


@pytest.fixture(scope="module")
def bad_images(workspace):
    folder = workspace / "with-bad"
    write_images(folder)
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_bad_images_name_the_option_the_command_has(workspace, bad_images, tmp_path, capsys):
    code, err = run_studio(capsys, *TI, "--data", bad_images, "--out", tmp_path / "o",
                           "--cache-dir", workspace / "cache")
    assert code == 2 and "Traceback" not in err
    assert "--skip-invalid-images" in err and "skip_invalid=True" not in err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def skipped_run(workspace, bad_images, quick_steps):
    """A run on a folder with a bad image, an unbracketed token and a nonsense initializer."""
    out = workspace / "run"
    code = main([
        "train", "textual-inversion", "--model", "tiny", "--data", str(bad_images),
        "--skip-invalid-images", "--token", "redc", "--init-word", "zzqqxxword",
        "--steps", "2", "--save-every", "2", "--latent-variants", "1", "--lr", "0.01",
        "--cache-dir", str(workspace / "cache"), "--out", str(out),
    ])
    return code, out


def test_skip_invalid_images_trains_on_the_usable_ones(skipped_run):
    code, out = skipped_run
    assert code == 0
    assert json.loads((out / "config.json").read_text())["skip_invalid_images"] is True


def test_an_unbracketed_token_and_a_split_initializer_warn(workspace, bad_images, tmp_path,
                                                           quick_steps, capsys):
    code = main([
        "train", "textual-inversion", "--model", "tiny", "--data", str(bad_images),
        "--skip-invalid-images", "--token", "redc", "--init-word", "zzqqxxword",
        "--steps", "1", "--latent-variants", "1", "--cache-dir", str(workspace / "cache"),
        "--out", str(tmp_path / "w"),
    ])
    err = capsys.readouterr().err
    assert code == 0
    warnings = [line for line in err.splitlines()
                if line.startswith("studio train textual-inversion: warning: ")]
    assert len(warnings) == 2, err
    assert "'redc' has no brackets" in warnings[0] and "'<redc>'" in warnings[0]
    assert "'zzqqxxword'" in warnings[1] and "start from their mean" in warnings[1]


def test_a_resume_may_lower_the_learning_rate_and_records_it(skipped_run, workspace, capsys):
    _, out = skipped_run
    code, err = run_studio(capsys, "train", "textual-inversion", "--resume", "--out", out,
                           "--steps", 3, "--lr", "0.001", "--cache-dir", workspace / "cache")
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 0.001 and config["steps"] == 3
    assert config["history"] == [
        {"step": 2, "changed": {"lr": {"from": 0.01, "to": 0.001},
                                "steps": {"from": 2, "to": 3}}},
    ]
    assert json.loads((out / "summary.json").read_text())["steps"] == 3


def test_a_missing_data_folder_is_not_called_an_output_problem(tmp_path, capsys):
    code, err = run_studio(capsys, *TI, "--data", tmp_path / "no-such-folder",
                           "--out", tmp_path / "o")
    assert_one_line_error(code, err, "train textual-inversion", "no-such-folder")
    assert "cannot write" not in err
    assert not (tmp_path / "o").exists()
