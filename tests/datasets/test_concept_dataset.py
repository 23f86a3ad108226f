import numpy as np
import pytest
from PIL import Image

from studio.datasets.concept_dataset import ConceptDataset
from studio.datasets.image_folder import ImageFolder
from studio.prompts.prompt_templates import PromptTemplates

pytestmark = pytest.mark.tensorflow_only

# Distinct flat colours, one per image, so each example can be traced back
# to its image when augmentation is off.
COLORS = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10), (10, 250, 250)]
NO_AUGMENTATION = dict(flip=False, crop_area_range=(1.0, 1.0))


@pytest.fixture
def color_folder(tmp_path):
    for index, color in enumerate(COLORS):
        Image.new("RGB", (32, 32), color).save(tmp_path / f"color {index}.png")
    (tmp_path / "color 0.txt").write_text("a {} on a beach\n<toy> in the snow\n")
    return ImageFolder(tmp_path, resolution=32)


def take(dataset, count):
    return list(dataset.take(count).as_numpy_iterator())


def image_index(image):
    """Which of COLORS a [-1, 1] flat image shows."""
    pixel = np.round((image[0, 0] + 1.0) * 127.5)
    return COLORS.index(tuple(int(v) for v in pixel))


def test_batches_have_the_promised_dtypes_shapes_and_range(good_folder, tokenizer):
    dataset = ConceptDataset(ImageFolder(good_folder.path, resolution=32), tokenizer, "<toy>")
    batches = take(dataset.build(batch_size=4, seed=0), 3)
    for batch in batches:
        assert set(batch) == {"images", "token_ids"}
        assert batch["images"].dtype == np.float32
        assert batch["images"].shape == (4, 32, 32, 3)
        assert batch["images"].min() >= -1.0 and batch["images"].max() <= 1.0
        assert batch["token_ids"].dtype == np.int32
        assert batch["token_ids"].shape == (4, tokenizer.sequence_length)


def test_same_seed_same_batches_other_seed_other_batches(good_folder, tokenizer):
    folder = ImageFolder(good_folder.path, resolution=32)

    def run(seed):
        # A new dataset each time, as a new training run would build it.
        return take(ConceptDataset(folder, tokenizer, "<toy>").build(4, seed=seed), 6)

    first, second, other = run(7), run(7), run(8)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["token_ids"], b["token_ids"])
    assert any(
        not np.array_equal(a["images"], c["images"]) for a, c in zip(first, other)
    )


def test_without_augmentation_images_are_the_decoded_pixels(color_folder, tokenizer):
    dataset = ConceptDataset(color_folder, tokenizer, "<toy>", **NO_AUGMENTATION)
    (batch,) = take(dataset.build(batch_size=5, seed=1), 1)
    for image in batch["images"]:
        index = image_index(image)
        np.testing.assert_allclose(
            image, color_folder.images[index] / 127.5 - 1.0, atol=1e-6
        )


def test_each_epoch_visits_every_image_once_with_its_own_captions(color_folder, tokenizer):
    dataset = ConceptDataset(color_folder, tokenizer, "<toy>", **NO_AUGMENTATION)
    count = len(COLORS)
    templates = set(PromptTemplates.get("object").fill("<toy>"))
    captions = {"a <toy> on a beach", "<toy> in the snow"}
    # Rows are compared as tokenized (decoding spaces out punctuation).
    everything = sorted(templates | captions)
    prompt_of_row = {tuple(row): text for text, row in zip(everything, tokenizer(everything))}
    orders, prompts_of_image = [], {index: set() for index in range(count)}
    for batch in take(dataset.build(batch_size=count, seed=3), 12):
        order = [image_index(image) for image in batch["images"]]
        assert sorted(order) == list(range(count))
        orders.append(tuple(order))
        for index, ids in zip(order, batch["token_ids"]):
            prompts_of_image[index].add(prompt_of_row[tuple(ids)])
    # The order changes from epoch to epoch.
    assert len(set(orders)) > 1
    # The image with a caption file gets its captions (placeholder filled),
    # the others a random choice among the templates.
    assert prompts_of_image[0] == captions
    for index in range(1, count):
        assert prompts_of_image[index] <= templates
        assert len(prompts_of_image[index]) > 1


def test_token_ids_are_the_tokenizers_padded_rows(color_folder, tokenizer):
    dataset = ConceptDataset(color_folder, tokenizer, "<toy>", templates=["{} alone"])
    assert dataset.captions[1] == ["<toy> alone"]
    (batch,) = take(dataset.build(batch_size=5, seed=0, epochs=1), 1)
    expected = tokenizer(["<toy> alone"])[0]
    rows = [row for row in batch["token_ids"] if tokenizer.decode(row) == "<toy> alone"]
    assert len(rows) == 4
    for row in rows:
        np.testing.assert_array_equal(row, expected)


def test_flip_can_be_turned_off(tmp_path, tokenizer):
    # Left half black, right half white: a flip shows as a white left edge.
    picture = np.zeros((32, 32, 3), np.uint8)
    picture[:, 16:] = 255
    Image.fromarray(picture).save(tmp_path / "half.png")
    folder = ImageFolder(tmp_path, resolution=32)

    def left_edges(flip):
        dataset = ConceptDataset(folder, tokenizer, "<toy>", flip=flip, crop_area_range=(1.0, 1.0))
        (batch,) = take(dataset.build(batch_size=32, seed=5), 1)
        return batch["images"][:, :, 0, 0].mean(axis=1)

    assert (left_edges(False) == -1.0).all()
    flipped = left_edges(True)
    assert (flipped == 1.0).any() and (flipped == -1.0).any()


def test_random_crop_zooms_in(tmp_path, tokenizer):
    # A white frame 4 pixels wide around black: crops keeping a quarter of
    # the area (half the side) lose the frame on at least one side.
    picture = np.full((32, 32, 3), 255, np.uint8)
    picture[4:-4, 4:-4] = 0
    Image.fromarray(picture).save(tmp_path / "frame.png")
    folder = ImageFolder(tmp_path, resolution=32)
    dataset = ConceptDataset(folder, tokenizer, "<toy>", flip=False, crop_area_range=(0.25, 0.25))
    (batch,) = take(dataset.build(batch_size=8, seed=2), 1)
    assert batch["images"].shape == (8, 32, 32, 3)
    for image in batch["images"]:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert (border < 0).any()


def test_finite_epochs_end_with_a_short_batch(color_folder, tokenizer):
    dataset = ConceptDataset(color_folder, tokenizer, "<toy>")
    sizes = [len(batch["images"]) for batch in dataset.build(batch_size=2, seed=0, epochs=2).as_numpy_iterator()]
    assert sizes == [2, 2, 2, 2, 2]
    sizes = [len(batch["images"]) for batch in dataset.build(batch_size=3, seed=0, epochs=1).as_numpy_iterator()]
    assert sizes == [3, 2]


def test_caption_without_the_concept_is_refused(tmp_path, tokenizer):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a {} here\na toy on a table\n")
    folder = ImageFolder(tmp_path, resolution=32)
    with pytest.raises(ValueError, match=r"caption of a.png: 'a toy on a table'"):
        ConceptDataset(folder, tokenizer, "<toy>")


def test_unregistered_placeholder_is_refused(color_folder, tokenizer):
    with pytest.raises(ValueError, match=r"add_placeholder_tokens.*\['<new>'\]"):
        ConceptDataset(color_folder, tokenizer, "<new>")


def test_bad_build_arguments(color_folder, tokenizer):
    dataset = ConceptDataset(color_folder, tokenizer, "<toy>")
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        dataset.build(batch_size=0)
    with pytest.raises(ValueError, match="Received: seed=-1"):
        dataset.build(seed=-1)
    with pytest.raises(ValueError, match="Received: crop_area_range="):
        ConceptDataset(color_folder, tokenizer, "<toy>", crop_area_range=(0.9, 0.5))
