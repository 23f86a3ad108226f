import os
import shutil

import numpy as np
import pytest
from PIL import Image

from studio.datasets.concept_dataset import ConceptDataset
from studio.datasets.image_folder import ImageFolder
from studio.datasets.latent_cache import LatentCache

pytestmark = pytest.mark.tensorflow_only

VARIANTS = 3
LATENT_CHANNELS = 4


@pytest.fixture
def folder_path(tmp_path):
    path = tmp_path / "photos"
    path.mkdir()
    for index in range(3):
        picture = np.random.default_rng(index).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(picture).save(path / f"photo {index}.png")
    return path


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def dataset(folder_path, tokenizer, cache, **options):
    return ConceptDataset(
        ImageFolder(folder_path, resolution=32), tokenizer, "<toy>", latent_cache=cache, **options
    )


def test_second_run_encodes_nothing(folder_path, cache_dir, tokenizer, counting_encoder):
    first = dataset(
        folder_path, tokenizer, LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    )
    assert counting_encoder.images == 3 * VARIANTS
    assert first.moments.shape == (3, VARIANTS, 4, 4, 2 * LATENT_CHANNELS)
    assert first.moments.dtype == np.float32

    encoder_calls = counting_encoder.calls
    cache = LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    second = dataset(folder_path, tokenizer, cache)
    assert counting_encoder.calls == encoder_calls
    assert cache.encoded_images == 0
    np.testing.assert_array_equal(second.moments, first.moments)


def test_encoders_downsampling_factor_sets_the_latent_size(
    folder_path, cache_dir, tokenizer, counting_encoder_class
):
    """The embedded tiny-shapes VAE shrinks by 4, SD's by 8: the encoder says which."""
    encoder = counting_encoder_class(downsampling_factor=4)
    cached = dataset(folder_path, tokenizer, LatentCache(encoder, "by-4", cache_dir, VARIANTS))
    assert cached.moments.shape == (3, VARIANTS, 8, 8, 2 * LATENT_CHANNELS)


def test_a_runs_cache_takes_the_backbones_downsampling(folder_path, cache_dir, tokenizer):
    """tiny-shapes-sd3's keras-hub VAE encoder does not say it shrinks by 4: the run asks the backbone."""
    from types import SimpleNamespace

    from studio.interop import load_backbone
    from studio.trainers.run_setup import latent_cache

    backbone = load_backbone("tiny-shapes-sd3")
    assert not hasattr(backbone.vae_encoder, "downsampling_factor")
    cache = latent_cache(backbone, SimpleNamespace(latent_variants=2, cache_dir=cache_dir))
    cached = dataset(folder_path, tokenizer, cache)
    assert cached.moments.shape == (3, 2, 8, 8, 2 * backbone.latent_channels)


def test_changed_image_is_encoded_again_alone(folder_path, cache_dir, tokenizer, counting_encoder):
    dataset(folder_path, tokenizer, LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS))
    before = dataset(
        folder_path, tokenizer, LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    ).moments
    Image.new("RGB", (40, 48), (9, 9, 9)).save(folder_path / "photo 1.png")

    cache = LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    after = dataset(folder_path, tokenizer, cache).moments
    assert cache.encoded_images == 1
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    assert not np.array_equal(after[1], before[1])
    # A flat picture has flat moments.
    np.testing.assert_allclose(after[1, ..., :3], 9 / 127.5 - 1.0, atol=1e-5)


def test_model_resolution_and_augmentation_are_part_of_the_key(
    folder_path, cache_dir, tokenizer, counting_encoder
):
    dataset(folder_path, tokenizer, LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS))
    for model_id, options in (
        ("tiny-v2", {}),
        ("tiny-v1", {"flip": False}),
        ("tiny-v1", {"crop_area_range": (0.5, 1.0)}),
    ):
        cache = LatentCache(counting_encoder, model_id, cache_dir, VARIANTS)
        dataset(folder_path, tokenizer, cache, **options)
        assert cache.encoded_images == 3, (model_id, options)
    cache = LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    ConceptDataset(ImageFolder(folder_path, resolution=64), tokenizer, "<toy>", latent_cache=cache)
    assert cache.encoded_images == 3


def test_variants_are_augmented_and_reproducible(folder_path, cache_dir, tokenizer, counting_encoder):
    first = dataset(
        folder_path, tokenizer, LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    ).moments
    assert not np.array_equal(first[0, 0], first[0, 1])
    # The same images, encoded again from an empty cache, give the same variants.
    shutil.rmtree(cache_dir)
    cache = LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    again = dataset(folder_path, tokenizer, cache).moments
    assert cache.encoded_images == 3
    np.testing.assert_array_equal(again, first)


def test_an_images_variants_do_not_depend_on_the_images_encoded_with_it(
    folder_path, cache_dir, tokenizer, counting_encoder
):
    """A duplicate gets the variants it has later, from the cache, on the first run too.

    The variants were seeded by all the images encoded together: two copies
    of one picture got different variants, stored under their one key, so
    the first run trained on other data than every later one (and than a
    run with 2 devices, which found the cache filled).
    """
    shutil.copy(folder_path / "photo 0.png", folder_path / "photo 0 copy.png")
    cache = LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    first = dataset(folder_path, tokenizer, cache).moments
    assert cache.encoded_images == 3  # the copy is encoded once
    names = sorted(os.listdir(folder_path))
    copy, original = names.index("photo 0 copy.png"), names.index("photo 0.png")
    np.testing.assert_array_equal(first[copy], first[original])
    again = dataset(folder_path, tokenizer, LatentCache(counting_encoder, "tiny-v1", cache_dir,
                                                         VARIANTS)).moments
    np.testing.assert_array_equal(again, first)
    # Encoded alone (the others cached), an image gets the variants it got with them.
    os.remove(sorted(cache_dir.iterdir())[0])
    cache = LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    np.testing.assert_array_equal(dataset(folder_path, tokenizer, cache).moments, first)
    assert cache.encoded_images == 1


def test_without_augmentation_one_variant_is_stored(folder_path, cache_dir, tokenizer, counting_encoder):
    cache = LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS)
    data = dataset(folder_path, tokenizer, cache, flip=False, crop_area_range=(1.0, 1.0))
    assert data.moments.shape[1] == 1
    assert counting_encoder.images == 3
    # The encoder saw the decoded images in [-1, 1].
    pooled = data.image_folder.images[0].reshape(4, 8, 4, 8, 3).mean(axis=(1, 3)) / 127.5 - 1.0
    np.testing.assert_allclose(data.moments[0, 0, ..., :3], pooled, atol=1e-5)


def test_pipeline_yields_cached_moments_reproducibly(folder_path, cache_dir, tokenizer, counting_encoder):
    data = dataset(folder_path, tokenizer, LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS))
    assert data.yields_moments

    def run():
        return list(data.build(batch_size=2, seed=4).take(6).as_numpy_iterator())

    batches = run()
    stored = data.moments.reshape(-1, *data.moments.shape[2:])
    seen = set()
    for batch, again in zip(batches, run()):
        assert set(batch) == {"moments", "token_ids"}
        assert batch["moments"].shape == (2, 4, 4, 2 * LATENT_CHANNELS)
        assert batch["moments"].dtype == np.float32
        assert batch["token_ids"].dtype == np.int32
        np.testing.assert_array_equal(batch["moments"], again["moments"])
        np.testing.assert_array_equal(batch["token_ids"], again["token_ids"])
        for moments in batch["moments"]:
            matches = [i for i, entry in enumerate(stored) if np.array_equal(entry, moments)]
            assert len(matches) == 1
            seen.add(matches[0])
    # Several variants are used, not always the first.
    assert len({index % VARIANTS for index in seen}) > 1


def test_cache_is_batched_and_leaves_the_folder_alone(folder_path, cache_dir, tokenizer, counting_encoder):
    before = {name: (folder_path / name).read_bytes() for name in os.listdir(folder_path)}
    dataset(folder_path, tokenizer, LatentCache(counting_encoder, "m", cache_dir, 5, batch_size=2))
    # 5 variants in batches of 2: 3 calls per image.
    assert counting_encoder.calls == 3 * 3
    assert {name: (folder_path / name).read_bytes() for name in os.listdir(folder_path)} == before
    assert len([name for name in os.listdir(cache_dir) if name.endswith(".npy")]) == 3


def test_unreadable_cache_entry_is_encoded_again(folder_path, cache_dir, tokenizer, counting_encoder):
    dataset(folder_path, tokenizer, LatentCache(counting_encoder, "m", cache_dir, VARIANTS))
    entry = sorted(cache_dir.iterdir())[0]
    entry.write_bytes(b"garbage")
    cache = LatentCache(counting_encoder, "m", cache_dir, VARIANTS)
    dataset(folder_path, tokenizer, cache)
    assert cache.encoded_images == 1


def test_cache_inside_the_image_folder_is_refused(folder_path, tokenizer, counting_encoder):
    cache = LatentCache(counting_encoder, "m", folder_path / "cache", VARIANTS)
    with pytest.raises(ValueError, match="outside the image folder"):
        dataset(folder_path, tokenizer, cache)
    assert not (folder_path / "cache").exists()


def test_encoder_with_the_wrong_output_is_refused(folder_path, cache_dir, tokenizer):
    cache = LatentCache(lambda images: np.zeros((len(images), 3, 3, 8), np.float32), "m", cache_dir)
    with pytest.raises(ValueError, match=r"Received: images \(4, 32, 32, 3\) -> \(4, 3, 3, 8\)"):
        dataset(folder_path, tokenizer, cache)


def test_bad_arguments(counting_encoder):
    with pytest.raises(ValueError, match="Received: model_id=''"):
        LatentCache(counting_encoder, "")
    with pytest.raises(ValueError, match="Received: num_variants=0"):
        LatentCache(counting_encoder, "m", num_variants=0)


def test_progress_is_reported_image_by_image(folder_path, cache_dir, tokenizer, counting_encoder):
    reported = []
    cache = LatentCache(counting_encoder, "tiny-v1", cache_dir, VARIANTS,
                        on_progress=lambda done, total: reported.append((done, total)))
    dataset(folder_path, tokenizer, cache)
    assert reported == [(0, 3), (1, 3), (2, 3), (3, 3)]
    reported.clear()
    dataset(folder_path, tokenizer, cache)  # Everything cached: nothing to report.
    assert reported == []
