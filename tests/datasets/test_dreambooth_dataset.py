import numpy as np
import pytest
from PIL import Image

from studio.datasets.dreambooth_dataset import (
    DreamBoothDataset,
    class_image_dataset,
    dreambooth_instance_dataset,
)
from studio.datasets.image_folder import ImageFolder
from studio.datasets.latent_cache import LatentCache
from studio.prompts.dreambooth_prompts import class_prompt, instance_prompt

pytestmark = pytest.mark.tensorflow_only

INSTANCE_COLOR = (200, 0, 0)
CLASS_COLOR = (0, 0, 200)


def flat_folder(path, color, count):
    path.mkdir()
    for index in range(count):
        Image.new("RGB", (32, 32), color).save(path / f"{index}.png")
    return ImageFolder(path, resolution=32)


@pytest.fixture
def folders(tmp_path):
    return flat_folder(tmp_path / "sks", INSTANCE_COLOR, 3), flat_folder(tmp_path / "dogs", CLASS_COLOR, 5)


def test_batches_join_instance_then_class_examples(folders, tokenizer):
    instances, classes = folders
    dataset = DreamBoothDataset(
        dreambooth_instance_dataset(instances, tokenizer, "sks", "dog"),
        class_image_dataset(classes, tokenizer, "dog"),
    )
    batches = list(dataset.build(batch_size=2, seed=0).take(3).as_numpy_iterator())
    instance_row, class_row = tokenizer([instance_prompt("sks", "dog"), class_prompt("dog")])
    for batch in batches:
        assert set(batch) == {"images", "token_ids", "is_class_image"}
        assert batch["images"].shape == (4, 32, 32, 3)
        assert batch["token_ids"].shape == (4, tokenizer.sequence_length)
        np.testing.assert_array_equal(batch["is_class_image"], [False, False, True, True])
        assert np.abs(batch["images"][:2] - (np.array(INSTANCE_COLOR) / 127.5 - 1)).max() < 1e-6
        assert np.abs(batch["images"][2:] - (np.array(CLASS_COLOR) / 127.5 - 1)).max() < 1e-6
        for row in batch["token_ids"][:2]:
            np.testing.assert_array_equal(row, instance_row)
        for row in batch["token_ids"][2:]:
            np.testing.assert_array_equal(row, class_row)
    again = list(dataset.build(batch_size=2, seed=0).take(3).as_numpy_iterator())
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a["images"], b["images"])


def test_epochs_count_instance_images_and_class_images_repeat(folders, tokenizer):
    instances, classes = folders
    dataset = DreamBoothDataset(
        dreambooth_instance_dataset(instances, tokenizer, "sks", "dog"),
        class_image_dataset(classes, tokenizer, "dog"),
    )
    sizes = [batch["is_class_image"].tolist() for batch in dataset.build(2, seed=1, epochs=1).as_numpy_iterator()]
    assert sizes == [[False, False, True, True], [False, True, True]]


def test_latent_batches_join_too(folders, tokenizer, counting_encoder, tmp_path):
    instances, classes = folders
    cache = LatentCache(counting_encoder, "m", tmp_path / "cache", num_variants=2)
    dataset = DreamBoothDataset(
        dreambooth_instance_dataset(instances, tokenizer, "sks", "dog", latent_cache=cache),
        class_image_dataset(classes, tokenizer, "dog", latent_cache=cache),
    )
    (batch,) = dataset.build(batch_size=3, seed=0).take(1).as_numpy_iterator()
    assert batch["moments"].shape == (6, 4, 4, 8)


def test_mismatched_datasets_are_refused(folders, tokenizer, counting_encoder, tmp_path):
    instances, classes = folders
    cache = LatentCache(counting_encoder, "m", tmp_path / "cache", num_variants=2)
    with pytest.raises(ValueError, match="yields moments: False vs True"):
        DreamBoothDataset(
            dreambooth_instance_dataset(instances, tokenizer, "sks", "dog"),
            class_image_dataset(classes, tokenizer, "dog", latent_cache=cache),
        )
    with pytest.raises(ValueError, match="Received: identifier='s ks'"):
        dreambooth_instance_dataset(instances, tokenizer, "s ks", "dog")
