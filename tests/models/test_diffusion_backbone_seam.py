"""The seam of `DiffusionBackbone`: every preset (SD 1.x, SD 2.x, tiny, tiny-shapes) goes through it."""

import numpy as np
import pytest
from keras import ops

from studio.models import (
    BACKBONE_PRESETS,
    ImagePreprocessor,
    StableDiffusionBackbone,
    TokenLookupView,
    backbone_class,
    family_of,
)
from studio.models.latent_distribution import LOG_VARIANCE_RANGE, sample_latents


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.fixture(scope="module", params=["tiny", "tiny-shapes"])
def backbone(request):
    return StableDiffusionBackbone.from_preset(request.param)


@pytest.mark.parametrize("preset", sorted(BACKBONE_PRESETS))
def test_every_preset_names_its_family_and_objective(preset):
    """Config level, so SD 1.x and 2.x need no full-size weights."""
    from studio.trainers.objectives import DDPMObjective, objective_for

    spec = BACKBONE_PRESETS[preset]
    family_class = backbone_class(family_of(preset))
    assert family_class.family == spec["family"]
    assert issubclass(family_class, StableDiffusionBackbone)  # SDXL reuses its DDPM objective.
    # The backbone's data without networks: what trainers choose the objective from.
    data_only = StableDiffusionBackbone(
        None, None, None, None, None,
        prediction_type=spec["prediction_type"], latent_scale=spec["latent_scale"],
        noise_schedule=spec["noise_schedule"], name=preset,
    )  # fmt: skip
    assert data_only.objective == {
        "type": "ddpm",
        "prediction_type": spec["prediction_type"],
        "noise_schedule": spec["noise_schedule"],
        "latent_scale": spec["latent_scale"],
    }
    objective = objective_for(data_only, min_snr_gamma=5.0)
    assert isinstance(objective, DDPMObjective)
    assert objective.prediction_type == spec["prediction_type"]
    assert objective.latent_scale == spec["latent_scale"]
    assert objective.min_snr_gamma == 5.0


def test_unknown_family_is_one_clear_error():
    with pytest.raises(ValueError, match="family='sd9'"):
        backbone_class("sd9")


def test_encode_text_is_the_text_encoder_context(backbone):
    ids = backbone.tokenizer(["a red circle", ""])
    conditioning = backbone.encode_text(ids)
    assert sorted(conditioning) == ["context"]
    np.testing.assert_array_equal(numpy(conditioning["context"]), numpy(backbone.text_encoder(ids)))


def test_token_lookup_view_reads_placeholders_and_leaves_the_backbone_alone(backbone):
    from studio.embeddings.placeholder_embedding import PlaceholderEmbedding
    from studio.tokenizers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_config(backbone.tokenizer.get_config())
    first_new_id = tokenizer.vocabulary_size
    word_ids = tokenizer.tokenize_words("red")  # Byte-level (tiny): one id per letter.
    tokenizer.add_placeholder_tokens("<seam>", len(word_ids))
    word_vectors = numpy(backbone.token_embedding.embeddings)[word_ids]
    lookup = PlaceholderEmbedding(backbone.token_embedding, first_new_id, word_vectors)
    view = backbone.with_token_lookup(tokenizer, lookup)

    assert isinstance(view, TokenLookupView)
    assert "<seam>" not in backbone.tokenizer.placeholder_tokens
    assert view.name == backbone.name and view.image_size == backbone.image_size
    # The placeholder's vectors are those of "red": its context equals the word's.
    with_placeholder = view.encode_text(view.tokenizer(["a <seam> circle"]))["context"]
    with_word = backbone.encode_text(backbone.tokenizer(["a red circle"]))["context"]
    np.testing.assert_allclose(numpy(with_placeholder), numpy(with_word), atol=1e-5)


def test_encode_images_samples_moments_once_for_every_caller(backbone):
    pixels = ImagePreprocessor.to_model_range(
        np.random.default_rng(0).integers(0, 256, (2, backbone.image_size, backbone.image_size, 3))
    )
    moments = numpy(backbone.vae_encoder(pixels))
    mean, log_variance = np.split(moments, 2, axis=-1)
    shape = backbone.latent_shape(backbone.image_size, backbone.image_size)
    assert mean.shape[1:] == shape
    noise = np.random.default_rng(1).standard_normal(mean.shape).astype("float32")
    expected = (mean + np.exp(0.5 * np.clip(log_variance, *LOG_VARIANCE_RANGE)) * noise)
    expected *= backbone.latent_scale
    np.testing.assert_allclose(numpy(backbone.encode_images(pixels, noise)), expected, atol=1e-5)
    # A drawing function is called with the latents' shape.
    drawn = backbone.encode_images(pixels, lambda s: noise.reshape(tuple(s)))
    np.testing.assert_allclose(numpy(drawn), expected, atol=1e-5)
    np.testing.assert_allclose(
        numpy(backbone.encode_images(pixels)), mean * backbone.latent_scale, atol=1e-6
    )


def test_decode_latents_and_denoise_are_the_networks(backbone):
    latents = np.random.default_rng(2).standard_normal(
        (1, *backbone.latent_shape(backbone.image_size, backbone.image_size))
    ).astype("float32")
    np.testing.assert_allclose(
        numpy(backbone.decode_latents(latents)),
        numpy(backbone.vae_decoder(latents / backbone.latent_scale)),
        atol=1e-6,
    )
    # NumPy throughout: a functional model's dict input must not mix kinds.
    conditioning = {
        key: numpy(value)
        for key, value in backbone.encode_text(backbone.tokenizer(["a circle"])).items()
    }
    timesteps = np.array([10], "int32")
    np.testing.assert_allclose(
        numpy(backbone.denoise(latents, timesteps, conditioning)),
        numpy(backbone.unet({"latents": latents, "timesteps": timesteps, **conditioning})),
        atol=1e-6,
    )


def test_image_preprocessor_works_on_numpy_tensorflow_and_keras():
    pixels = np.array([[0, 127, 255]], "uint8")
    expected = pixels.astype("float32") / 127.5 - 1.0
    np.testing.assert_array_equal(ImagePreprocessor.to_model_range(pixels), expected)
    # XLA (JAX) may divide as a product with 1 / 127.5: one float32 ulp.
    np.testing.assert_allclose(
        numpy(ImagePreprocessor.to_model_range(ops.convert_to_tensor(pixels))), expected, atol=1e-6
    )
    np.testing.assert_array_equal(ImagePreprocessor.to_uint8(expected), pixels)


@pytest.mark.tensorflow_only
def test_image_preprocessor_works_inside_tf_data():
    import tensorflow as tf

    pixels = np.array([[0, 127, 255]], "uint8")
    dataset = tf.data.Dataset.from_tensors(pixels).map(ImagePreprocessor.to_model_range)
    [values] = list(dataset.as_numpy_iterator())
    np.testing.assert_array_equal(values, pixels.astype("float32") / 127.5 - 1.0)


def test_sample_latents_takes_noise_or_none():
    moments = np.concatenate([np.ones((1, 2, 2, 4)), np.full((1, 2, 2, 4), 100.0)], -1)
    # The log-variance is clamped: 100 -> 20.
    noise = np.ones((1, 2, 2, 4), "float32")
    np.testing.assert_allclose(
        numpy(sample_latents(moments, noise, scale=2.0)), 2.0 * (1.0 + np.exp(10.0)), rtol=1e-6
    )
    np.testing.assert_allclose(numpy(sample_latents(moments, None, scale=2.0)), 2.0)


def test_from_preset_refuses_models_to_convert(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"{}")
    with pytest.raises(ValueError, match="studio.interop.load_backbone"):
        StableDiffusionBackbone.from_preset(str(path))
