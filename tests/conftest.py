"""Shared test set-up.

The Keras backend is chosen before any test module imports Keras: the
suite runs under TensorFlow unless KERAS_BACKEND says otherwise; .ci/run
runs the backend-agnostic tests again with KERAS_BACKEND=jax.
"""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# JAX's persistent compilation cache, one per test run (set by the first
# process, before any imports JAX; the xdist workers and the `studio`
# processes that tests start inherit it): many tests compile the same tiny
# networks, and a compilation found in the cache is not done again (about
# half the CPU time of a JAX test file on 2 cores). Fresh for every run, so a
# run never reads what another version of the code compiled.
_JAX_CACHE_VARIABLE = "JAX_COMPILATION_CACHE_DIR"
_OWN_JAX_CACHE = None
if _JAX_CACHE_VARIABLE not in os.environ:
    import tempfile

    _OWN_JAX_CACHE = tempfile.mkdtemp(prefix="studio-tests-jax-cache-")
    os.environ[_JAX_CACHE_VARIABLE] = _OWN_JAX_CACHE
    # Compilations under this many seconds are not worth a file.
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")


def pytest_unconfigure(config):
    if _OWN_JAX_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_JAX_CACHE, ignore_errors=True)


# --- The README's examples ----------------------------------------------------
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


@pytest.fixture(scope="session")
def readme_python_blocks():
    """`readme_python_blocks(marker)` -> the ```python blocks right after `marker` in README.md.

    The marker (an HTML comment) appears once; the blocks follow it with
    only blank lines between them, and the first prose line ends them.
    """

    def blocks(marker):
        with open(README, encoding="utf-8") as file:
            text = file.read()
        assert text.count(marker) == 1, f"{marker} must appear once in README.md"
        rest, found = text.split(marker, 1)[1], []
        while match := re.match(r"\s*```python\n(.*?)```", rest, re.DOTALL):
            found.append(match.group(1))
            rest = rest[match.end():]
        assert found, f"no ```python block after {marker}"
        return found

    return blocks


# --- Eager TensorFlow for tests whose subject is not compilation -------------
# A command's pipeline traces its sampling loop on every call (about 5 s on 2
# cores for a few steps of a tiny model), as a command's trainer traces its
# step; tests of what commands and pages write or load need neither. The
# compiled loop and steps have their own tests (tests/pipelines/
# test_sampling_loop.py, tests/trainers/test_textual_inversion_trainer.py).


@pytest.fixture(scope="session")
def eager_tensorflow_functions():
    """`with eager_tensorflow_functions(): ...`: TensorFlow runs its functions eagerly.

    No effect under JAX. For module-scoped fixtures; tests use `eager_tensorflow`.
    """
    import contextlib

    @contextlib.contextmanager
    def eager():
        import keras

        if keras.config.backend() != "tensorflow":
            yield
            return
        import tensorflow as tf

        tf.config.run_functions_eagerly(True)
        try:
            yield
        finally:
            tf.config.run_functions_eagerly(False)

    return eager


@pytest.fixture
def eager_tensorflow(eager_tensorflow_functions):
    """This test's TensorFlow functions run eagerly (no effect under JAX)."""
    with eager_tensorflow_functions():
        yield


# --- TensorFlow graphs without Grappler, except in `large` tests -------------
# Grappler (TensorFlow's graph optimiser) rewrites a function's graph on its
# first call; for a tiny model's train step that takes 10-20 s on 2 cores,
# more than the steps. Tests of what a traced graph computes do not need the
# rewrites, which must not change results (the old-run resume test in
# tests/trainers/test_resume_old_run_folders.py matches, to 1e-5, files that
# `studio` wrote with Grappler on). `large` tests (the learning runs, the
# notebooks, the browser) keep it on, as `studio` runs.


@pytest.fixture(autouse=True)
def _grappler_only_in_large_tests(request):
    import keras

    if keras.config.backend() == "tensorflow":
        import tensorflow as tf

        optimise = request.node.get_closest_marker("large") is not None
        options = tf.config.optimizer.get_experimental_options()
        if options.get("disable_meta_optimizer", False) == optimise:
            tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not optimise})
    yield


# --- The embedded model, shared by the session ------------------------------
# Several folders generate with tiny-shapes and read the images with the
# shipped shapes classifier; loading each costs seconds, so they are loaded
# once. Tests must not change them (trainers' tests add placeholder tokens
# to their own backbone, tests/trainers/conftest.py's `tiny_backbone`).


@pytest.fixture(scope="session")
def tiny_shapes_pipeline():
    """A `TextToImagePipeline` of the embedded `tiny-shapes` model (shipped weights)."""
    from studio.models import StableDiffusionBackbone
    from studio.pipelines import TextToImagePipeline

    return TextToImagePipeline(StableDiffusionBackbone.from_preset("tiny-shapes"))


@pytest.fixture(scope="session")
def read_shapes():
    """`read(images)` -> what the shipped shapes classifier sees.

    Returns a list of (colour, shape, background), one per image.
    """
    from studio.evaluation.shapes_classifier import ShapesClassifier

    classifier = ShapesClassifier.from_package()

    def read(images):
        seen = classifier.predict_attributes(images)
        return list(zip(seen["colour"], seen["shape"], seen["background"]))

    return read


@pytest.fixture(scope="session")
def held_out_shape_reading(read_shapes):
    """`reading(backbone)` -> `(accuracy, [(asked, seen), ...])` on held-out prompts.

    Six prompts that name a shape on (shape, colour, background)
    combinations held out of the shapes world's training data, two images
    each (20 steps, guidance 4, seed 0): the share of images in which the
    shipped classifier reads the asked shape. For the embedded models of
    every family (`tiny-shapes-xl`, `tiny-shapes-sd3`).
    """
    import numpy as np

    from studio.datasets.shapes_world import ShapesWorld
    from studio.pipelines import TextToImagePipeline

    combinations = [
        ("circle", "red", "black"), ("circle", "blue", "gray"),
        ("square", "yellow", "white"), ("square", "purple", "gray"),
        ("triangle", "red", "white"), ("triangle", "purple", "black"),
    ]  # fmt: skip
    assert all(ShapesWorld.is_held_out(*combination) for combination in combinations)
    prompts = [f"a {colour} {shape} on a {background} background"
               for shape, colour, background in combinations]
    images_per_prompt = 2

    def reading(backbone):
        result = TextToImagePipeline(backbone)(
            prompts, num_images_per_prompt=images_per_prompt, num_steps=20, guidance_scale=4.0,
            seed=0)
        asked = [shape for shape, _, _ in combinations for _ in range(images_per_prompt)]
        seen = [shape for _, shape, _ in read_shapes(result.images)]
        pairs = list(zip(asked, seen))
        return float(np.mean([a == s for a, s in pairs])), pairs

    return reading


# --- CLIP's real vocabulary ---------------------------------------------------
# Read out of the `open-clip-torch` wheel (which ships it as
# `open_clip/bpe_simple_vocab_16e6.txt.gz`): pip can reach the package
# registry where GitHub, the file's usual origin, may be unreachable. The
# wheel is downloaded once, never installed, and cached with the extracted
# file under ~/.cache/keras-sd-studio-tests (or $KERAS_SD_STUDIO_TEST_CACHE).
# Without network the tests that need it are skipped, or fail when the
# environment variable CI is set.

VOCABULARY_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
WHEEL_MEMBER = f"open_clip/{VOCABULARY_FILENAME}"
PIP_TIMEOUT_S = 300


def _cache_folder():
    default = Path.home() / ".cache" / "keras-sd-studio-tests"
    return Path(os.environ.get("KERAS_SD_STUDIO_TEST_CACHE", default)) / "open-clip-torch"


def _unavailable(reason):
    if os.environ.get("CI"):
        pytest.fail(f"CLIP's vocabulary file is needed on CI: {reason}")
    pytest.skip(f"CLIP's vocabulary file is unavailable: {reason}")


def _download_wheel(folder):
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--quiet", "--disable-pip-version-check", "open-clip-torch", "-d", str(folder),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        _unavailable(f"`{' '.join(command)}` failed: {error}")
    wheels = sorted(folder.glob("open_clip_torch-*.whl"))
    if result.returncode != 0 or not wheels:
        _unavailable(f"`{' '.join(command)}` failed: {result.stderr[-1000:]}")
    return wheels[-1]


@pytest.fixture(scope="session")
def clip_vocabulary_file():
    """Path of CLIP's bpe_simple_vocab_16e6.txt.gz, as shipped in open-clip-torch."""
    folder = _cache_folder()
    target = folder / VOCABULARY_FILENAME
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("open_clip_torch-*.whl")) or [_download_wheel(folder)]
    try:
        with zipfile.ZipFile(wheels[-1]) as wheel:
            data = wheel.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as error:
        wheels[-1].unlink()  # A broken download is fetched again next time.
        _unavailable(f"cannot read {WHEEL_MEMBER} from {wheels[-1]}: {error}")
    # Test sessions (and xdist workers) running at once never see half a file.
    from studio.files.atomic_write import write_file_atomically

    write_file_atomically(target, data)
    return target


@pytest.fixture(scope="session")
def clip_vocabulary(clip_vocabulary_file):
    """CLIP's (vocabulary, merges), read once per session."""
    from studio.tokenizers import load_clip_vocabulary

    return load_clip_vocabulary(clip_vocabulary_file)


@pytest.fixture
def clip_tokenizer(clip_vocabulary):
    """A fresh CLIP tokenizer (tests add placeholders to it)."""
    from studio.tokenizers import CLIPTokenizer

    vocabulary, merges = clip_vocabulary
    return CLIPTokenizer(vocabulary, merges)


# --- A tiny SDXL pipeline in PyTorch, shared by tests/models/sdxl and tests/interop ---
# SDXL base's layout (no attention on the top level, deeper transformers
# below, linear projections, added text-time embedding, CLIP ViT-L +
# projected bigG) at widths whose heads are 64 wide, as single files'
# readers infer them. Built once per session; skipped without torch.

SDXL_TINY = {
    "latent_size": 8,
    "image_size": 16,  # Two VAE levels.
    "clip_l_width": 64,
    "clip_g_width": 128,
    "pooled_width": 64,
    "time_ids_dim": 8,
}


@pytest.fixture(scope="session")
def sdxl_reference(tmp_path_factory):
    """Random tiny SDXL modules (diffusers, transformers), saved by
    `StableDiffusionXLPipeline.save_pretrained`.

    Returns a namespace: `folder`, `pipeline`, `unet`, `vae`,
    `text_encoder`, `text_encoder_2`, `sizes` (`SDXL_TINY`).
    """
    import types

    import numpy as np

    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from studio.interop.hf_tokenizer_files import write_hf_tokenizer
    from studio.tokenizers import CLIPTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    sizes = SDXL_TINY
    folder = tmp_path_factory.mktemp("sdxl-tiny")
    tokenizer_folders = {}
    for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        path = folder / f"source-{name}"
        path.mkdir()
        write_hf_tokenizer(CLIPTokenizer.byte_level(pad_token=pad), str(path))
        tokenizer_folders[name] = str(path)
    tokenizers = {
        name: transformers.CLIPTokenizer.from_pretrained(path)
        for name, path in tokenizer_folders.items()
    }
    vocabulary = 514
    common = dict(
        vocab_size=vocabulary,
        max_position_embeddings=77,
        num_hidden_layers=3,
        bos_token_id=vocabulary - 2,
        eos_token_id=vocabulary - 1,
    )
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            hidden_size=sizes["clip_l_width"],
            intermediate_size=2 * sizes["clip_l_width"],
            num_attention_heads=sizes["clip_l_width"] // 64,
            hidden_act="quick_gelu",
            pad_token_id=vocabulary - 1,
            **common,
        )
    )
    text_encoder_2 = transformers.CLIPTextModelWithProjection(
        transformers.CLIPTextConfig(
            hidden_size=sizes["clip_g_width"],
            intermediate_size=2 * sizes["clip_g_width"],
            num_attention_heads=sizes["clip_g_width"] // 64,
            hidden_act="gelu",
            projection_dim=sizes["pooled_width"],
            pad_token_id=0,
            **common,
        )
    )
    unet = diffusers.UNet2DConditionModel(
        sample_size=sizes["latent_size"],
        block_out_channels=(64, 64, 128),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(1, 1, 2),
        transformer_layers_per_block=(1, 1, 2),
        cross_attention_dim=sizes["clip_l_width"] + sizes["clip_g_width"],
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=sizes["time_ids_dim"],
        projection_class_embeddings_input_dim=sizes["pooled_width"] + 6 * sizes["time_ids_dim"],
        norm_num_groups=32,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=sizes["image_size"],
        scaling_factor=0.13025,
    )
    # Norm scales and biases away from 1 and 0, so that a swapped pair shows.
    with torch.no_grad():
        for module in (unet, vae, text_encoder, text_encoder_2):
            for name, parameter in module.named_parameters():
                if parameter.ndim == 1:
                    parameter.normal_(1.0 if name.endswith(".weight") else 0.0, 0.2)
            module.eval()
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False
    )
    pipeline = diffusers.StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizers["tokenizer"],
        tokenizer_2=tokenizers["tokenizer_2"],
        unet=unet,
        scheduler=scheduler,
    )
    saved = folder / "pipeline"
    pipeline.save_pretrained(str(saved))
    rng = np.random.default_rng(7)
    return types.SimpleNamespace(
        folder=str(saved),
        pipeline=pipeline,
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        sizes=sizes,
        rng=rng,
    )


@pytest.fixture(scope="session")
def sdxl_imported(sdxl_reference):
    """The tiny SDXL folder imported by `studio.interop.import_model` (once)."""
    from studio.interop import import_model

    return import_model(sdxl_reference.folder)


# --- Test processes (pytest-xdist) --------------------------------------------
# `.ci/run` runs the suite in two processes (`-n 2 --dist loadgroup`), which
# hand out tests one by one, except for these groups, each run whole by one
# process:
# - the full-size models (8-16 GiB each), so that two are never in memory at
#   once on CI's 24 GiB;
# - files sharing an expensive session fixture, which is then built once;
# - each file whose tests share a module-scoped fixture (a trained run, a
#   built model), which is then built once rather than in both processes.
# The groups need pytest below 9.2 (pyproject.toml; tests/test_xdist_groups.py).
FULL_SIZE_MODEL_FILES = (
    "tests/models/test_unet_keras_cv.py",
    "tests/models/test_clip_text_encoder.py",
    "tests/models/test_vae_decoder.py",
    "tests/models/test_vae_encoder.py",
    "tests/models/test_stable_diffusion_backbone.py",
    "tests/interop/test_full_size_import.py",
    "tests/interop/test_sdxl_full_size_names.py",
    "tests/trainers/test_lora_targets.py",
)


# The app's trained-and-resumed run (~80 s).
SHARED_FIXTURE_GROUPS = {
    "tests/app/test_app_workflow.py": "app_workflow",
    "tests/app/test_browser.py": "app_workflow",
}


def _uses_a_module_fixture(item):
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(definitions and definitions[-1].scope in ("module", "class")
               for definitions in info.name2fixturedefs.values())


# tryfirst: xdist reads the groups in its own hook of this name (in each worker).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(item.iter_markers("xdist_group")):
            continue
        path = item.nodeid.split("::")[0]
        large = item.get_closest_marker("large") is not None
        if large and path in FULL_SIZE_MODEL_FILES:
            group = "full_size_models"
        elif path in SHARED_FIXTURE_GROUPS:
            group = SHARED_FIXTURE_GROUPS[path]
        elif _uses_a_module_fixture(item):
            group = path
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))


# --- Collection stays light ---------------------------------------------------
# Every process of a run collects every test module (the xdist controller
# and each worker), so a module that imports PyTorch or diffusers at its top
# costs each of them seconds before any test starts (8 of the 15 s that
# collection took). Those oracles are imported inside the tests that use
# them; tests/test_collection.py fails if collecting imported one.
ORACLES_IMPORTED_IN_TESTS = ("torch", "diffusers", "transformers", "peft", "keras_hub")
_imported_while_collecting = []


def pytest_collection_finish(session):
    _imported_while_collecting[:] = [
        name for name in ORACLES_IMPORTED_IN_TESTS if name in sys.modules
    ]


@pytest.fixture(scope="session")
def oracles_imported_while_collecting():
    """The heavy oracle libraries this process had imported when collection ended."""
    return tuple(_imported_while_collecting)
