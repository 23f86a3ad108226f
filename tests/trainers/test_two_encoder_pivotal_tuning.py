"""Pivotal tuning on SD-XL (#18) and SD3 (#19): a new token's rows in CLIP-L/G + a LoRA, one run.

On `tiny-sdxl` (`PivotalTuningTrainer`, UNet LoRA) and `tiny-sd3`
(`SD3PivotalTuningTrainer`, MMDiT LoRA), a few eager steps: only the
token's rows and the LoRA matrices change; the rows stop after
`embedding_steps` while the LoRA goes on; the files the run writes,
applied as generation applies them, reproduce the trained model; a resumed
run ends as an uninterrupted one. SD3's command wiring and refusals are at
the end.
"""

import dataclasses

import keras
import numpy as np
import pytest
from keras import ops

from studio.errors import InvalidInputError

TOKEN = "<cross>"
TOTAL_STEPS = 3
EMBEDDING_STEPS = 1
STOP_STEP = 2
LORA_RANK = 2
LEARNING_RATE = 2e-2
LATENT_SIZE = 8
# keras-hub's SD3 backbone takes about 70 s to build under JAX on 2 shared
# cores (7 s under TensorFlow), as in tests/models/sd3.
SLOW_UNDER_JAX = [pytest.mark.large] if keras.backend.backend() == "jax" else []
slow_under_jax = pytest.mark.large if SLOW_UNDER_JAX else (lambda test: test)


@dataclasses.dataclass(frozen=True)
class Family:
    model: str
    trainer: str  # module path and class name under studio.trainers.dreambooth
    latent_channels: int
    # The tiny tokenizers spell words by bytes: "red" is r, e, d</w>, one row each
    # with 3 vectors; "square"'s pieces give one row their mean.
    init_word: str = "square"
    num_vectors: int = 1
    # The MMDiT's (or UNet's) LoRA modules the trainer adapts, A and B each.
    lora_modules: int | None = None
    # The files `save_results` writes, in order.
    files: tuple = ("embedding.safetensors", "lora.safetensors")

    def trainer_class(self):
        import importlib

        module, name = self.trainer.rsplit(".", 1)
        return getattr(importlib.import_module(f"studio.trainers.dreambooth.{module}"), name)


SDXL = Family("tiny-sdxl", "pivotal_tuning_trainer.PivotalTuningTrainer", 4)
SD3 = Family("tiny-sd3", "sd3_pivotal_tuning_trainer.SD3PivotalTuningTrainer", 16,
             init_word="red", num_vectors=3, lora_modules=7,
             files=("embedding.safetensors", "lora.safetensors", "lora.diffusers.safetensors"))
PROMPT = f"a photo of {TOKEN}"


def numpy(x):
    return np.array(ops.convert_to_numpy(x))


def pivotal_trainer(family, options, **kwargs):
    from studio.interop import load_backbone

    backbone = load_backbone(family.model)
    trainer = family.trainer_class()(
        backbone, TOKEN, family.init_word, embedding_steps=EMBEDDING_STEPS,
        num_vectors=family.num_vectors, lora_rank=LORA_RANK, prior_loss_weight=1.0, seed=3,
        **kwargs)  # fmt: skip
    trainer.compile(optimizer=keras.optimizers.AdamW(LEARNING_RATE), **options)
    return trainer


def batches(family, tokenizer, count, seed=0):
    """`count` batches of one subject example ("a photo of <cross>") and one class example."""
    rng = np.random.default_rng(seed)
    token_ids = np.asarray(tokenizer([PROMPT, f"a photo of a {family.init_word}"]))
    result = []
    for _ in range(count):
        mean = rng.standard_normal((2, LATENT_SIZE, LATENT_SIZE, family.latent_channels))
        moments = np.concatenate([mean, np.full_like(mean, -2.0)], -1).astype("float32")
        result.append({"token_ids": token_ids, "moments": moments,
                       "is_class_image": np.array([False, True])})
    return result


def base_weights(backbone):
    return [w for network in backbone.components.values() for w in network.weights
            if "lora_kernel" not in w.path]


def lora_values(trainer):
    return [numpy(v) for v in trainer.trainable_variables if "lora_kernel" in v.path]


@pytest.fixture(scope="module", params=[pytest.param(SDXL, id="sdxl"),
                                        pytest.param(SD3, id="sd3", marks=SLOW_UNDER_JAX)])
def family(request):
    return request.param


@pytest.fixture(scope="module")
def checkpoints(family, tmp_path_factory):
    from studio.trainers.run.training_checkpoint import TrainingCheckpoint

    return TrainingCheckpoint(tmp_path_factory.mktemp("pivotal") / "checkpoints")


@pytest.fixture(scope="module")
def trained(family, quick_compile_options, checkpoints):
    """A trainer after each of its steps: the token's rows, the LoRA, and every base weight.

    Its training state is checkpointed at `STOP_STEP`, after the rows stopped.
    """
    trainer = pivotal_trainer(family, quick_compile_options)
    base_before = [numpy(v) for v in base_weights(trainer.backbone)]
    history = [(trainer.learned_vectors(), lora_values(trainer))]
    for step, batch in enumerate(batches(family, trainer.backbone.tokenizer, TOTAL_STEPS), 1):
        trainer.train_on_batch(batch)
        history.append((trainer.learned_vectors(), lora_values(trainer)))
        if step == STOP_STEP:
            checkpoints.save(trainer, step)
    return trainer, base_before, history


@pytest.mark.filterwarnings("ignore:The initializer")
def test_the_rows_start_from_the_init_word_in_each_table(family, trained):
    trainer, _, history = trained
    backbone = trainer.backbone
    word_ids = backbone.tokenizer.tokenize_words(family.init_word)
    for key, table in backbone.token_embeddings.items():
        pieces = numpy(table.embeddings)[word_ids]
        # One row per piece when the counts agree; one row gets the pieces' mean.
        if len(word_ids) != family.num_vectors:
            assert family.num_vectors == 1
            pieces = pieces.mean(axis=0, keepdims=True)
        np.testing.assert_allclose(history[0][0][key], pieces, rtol=1e-6, atol=1e-7)


def test_only_the_token_rows_and_the_lora_train(family, trained):
    trainer, base_before, history = trained
    trainable = {v.path for v in trainer.trainable_variables}
    rows = {v.path for v in trainer.trainable_variables if "pivotal_lookup" in v.path}
    assert len(rows) == 2  # one set of rows per text encoder
    lora = trainable - rows
    assert all("lora_kernel" in path for path in lora)
    if family.lora_modules is not None:
        assert len(lora) == 2 * family.lora_modules
    # Every base weight (the token tables included) is as it was, bit for bit.
    weights = base_weights(trainer.backbone)
    assert len(weights) == len(base_before) > 0
    for variable, before in zip(weights, base_before):
        np.testing.assert_array_equal(numpy(variable), before)
    first, last = history[0], history[-1]
    widths = {key: table.embeddings.shape[1]
              for key, table in trainer.backbone.token_embeddings.items()}  # fmt: skip
    assert {key: v.shape for key, v in last[0].items()} == {
        key: (family.num_vectors, width) for key, width in widths.items()}
    for key in ("clip_l", "clip_g"):
        assert np.abs(last[0][key] - first[0][key]).max() > 1e-4
    assert max(np.abs(b - a).max() for a, b in zip(first[1], last[1])) > 1e-4


def test_the_rows_stop_after_their_steps_while_the_lora_goes_on(trained):
    _, _, history = trained
    for step in range(1, TOTAL_STEPS + 1):
        (rows_before, lora_before), (rows_after, lora_after) = history[step - 1], history[step]
        rows_moved = max(np.abs(rows_after[k] - rows_before[k]).max() for k in rows_after)
        lora_moved = max(np.abs(b - a).max() for a, b in zip(lora_before, lora_after))
        assert lora_moved > 0, step
        if step <= EMBEDDING_STEPS:
            assert rows_moved > 0, step
        else:
            assert rows_moved == 0, step


def _denoiser_inputs(family, backbone, conditioning):
    """The latents, timesteps and conditioning of one denoiser call."""
    rng = np.random.default_rng(0)
    latents = ops.convert_to_tensor(
        rng.standard_normal((1, LATENT_SIZE, LATENT_SIZE, family.latent_channels)), "float32")
    if family is SD3:
        return latents, ops.convert_to_tensor([500.0], "float32"), conditioning
    time_ids = ops.convert_to_tensor(
        [backbone.time_ids(8 * LATENT_SIZE, 8 * LATENT_SIZE)], "float32")
    return latents, ops.convert_to_tensor([500], "int32"), dict(conditioning, time_ids=time_ids)


def test_the_files_applied_as_generation_applies_them_give_the_trained_model(
        family, trained, tmp_path):
    from studio.embeddings import load_embedding
    from studio.lora.lora_weights import LoRAWeights
    from studio.pipelines import GenerationRunner, GenerationSettings

    trainer, _, history = trained
    paths = [str(path) for path in trainer.save_results(str(tmp_path), step=TOTAL_STEPS)]
    assert [path.rsplit("/", 1)[-1] for path in paths] == list(family.files)
    embedding_path, *lora_paths = paths
    embedding = load_embedding(embedding_path)
    assert (embedding.architecture, embedding.steps) == ("sd-xl", TOTAL_STEPS)
    assert embedding.metadata["studio.placeholder"] == TOKEN
    assert embedding.metadata.get("studio.base_family") == ("sd3" if family is SD3 else None)
    for key in ("clip_l", "clip_g"):
        np.testing.assert_array_equal(embedding.vectors[key], history[-1][0][key])
    lora = LoRAWeights.load(lora_paths[0])
    assert lora.metadata["studio_method"] == "pivotal_tuning"
    assert lora.metadata["studio_embedding_file"] == "embedding.safetensors"
    assert lora.metadata["studio_placeholder"] == TOKEN

    trained_view = trainer.sampling_backbone()
    ids = trained_view.tokenizer([PROMPT])
    expected = trained_view.encode_text(ids)
    output = numpy(trained_view.denoise(*_denoiser_inputs(family, trainer.backbone, expected)))
    # Each LoRA file (SD3: kohya's and diffusers' names), with the embedding, as
    # `studio generate` loads them into a fresh model.
    for path in lora_paths:
        settings = GenerationSettings(PROMPT, model=family.model, loras=((path, 1.0),),
                                      embeddings=(embedding_path,), steps=1, seed=0)
        generated = GenerationRunner().pipeline(settings).backbone
        np.testing.assert_array_equal(np.asarray(generated.tokenizer([PROMPT])), np.asarray(ids))
        actual = generated.encode_text(ids)
        np.testing.assert_allclose(numpy(actual["context"]), numpy(expected["context"]),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            numpy(generated.denoise(*_denoiser_inputs(family, trainer.backbone, actual))),
            output, rtol=1e-4, atol=1e-5, err_msg=path)


def test_a_resumed_run_ends_as_the_uninterrupted_one(family, trained, checkpoints,
                                                    quick_compile_options):
    whole, _, history = trained
    resumed = pivotal_trainer(family, quick_compile_options)
    assert checkpoints.restore(resumed)["step"] == STOP_STEP
    # The checkpoint holds the rows as they stopped, not as the optimizer left them.
    for key, vectors in resumed.learned_vectors().items():
        np.testing.assert_array_equal(vectors, history[STOP_STEP][0][key])
    for batch in batches(family, resumed.backbone.tokenizer, TOTAL_STEPS)[STOP_STEP:]:
        resumed.train_on_batch(batch)
    for key, vectors in resumed.learned_vectors().items():
        np.testing.assert_allclose(vectors, history[-1][0][key], rtol=1e-6, atol=1e-7)
    for a, b in zip(history[-1][1], lora_values(resumed)):
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    for a, b in zip(whole.training_state_extras, resumed.training_state_extras):
        np.testing.assert_array_equal(numpy(b), numpy(a))


# --- SD3 only: what the trainer refuses, and the command's wiring -----------


@slow_under_jax
def test_sd3_refuses_text_encoder_lora_and_cached_context(quick_compile_options):
    trainer = pivotal_trainer(SD3, quick_compile_options)
    with pytest.raises(InvalidInputError, match="CLIP-L/G stay frozen"):
        pivotal_trainer(SD3, quick_compile_options, train_text_encoder=True)
    ids = np.asarray(trainer.backbone.tokenizer([PROMPT]))
    cached = {key: numpy(value) for key, value in trainer.backbone.encode_text(ids).items()}
    latents = np.zeros((1, LATENT_SIZE, LATENT_SIZE, SD3.latent_channels), "float32")
    with pytest.raises(ValueError, match="must hold 'token_ids'"):
        trainer({"latents": latents, **cached})


@pytest.mark.filterwarnings("ignore:The initializer")
@slow_under_jax
def test_the_command_builds_the_sd3_pivotal_trainer_for_token(tmp_path):
    from studio.models.sd3 import SD3Backbone
    from studio.trainers import DreamBoothSettings
    from studio.trainers.distributed.data_parallel_devices import DataParallelDevices
    from studio.trainers.dreambooth.dreambooth_training import build_dreambooth_trainer

    settings = DreamBoothSettings(
        model="tiny-sd3", data=str(tmp_path), instance_prompt=PROMPT, lora_rank=2,
        lora_feed_forward=True, token=TOKEN, init_word=SD3.init_word, ti_fraction=0.25, steps=8)
    backbone = SD3Backbone.from_preset("tiny-sd3")
    trainer = build_dreambooth_trainer(settings, backbone, DataParallelDevices())
    assert isinstance(trainer, SD3.trainer_class())
    config = trainer.get_config()
    assert (config["placeholder_token"], config["initializer_word"]) == (TOKEN, SD3.init_word)
    assert config["embedding_steps"] == 2 and config["lora_rank"] == 2
    # --lora-feed-forward reaches the MMDiT's LoRA: 13 modules, A and B each, and the rows.
    assert len(trainer.trainable_variables) == 2 * 13 + 2
