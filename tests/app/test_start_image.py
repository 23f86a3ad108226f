"""The Generate page's start image: img2img and inpainting settings as the pipeline takes them."""

import numpy as np
import pytest

from studio.app.start_image import StartImage, preview, rectangle_mask

from .conftest import new_app, page_path, png_bytes

# Commands and pages generate here; their compiled loop is tested elsewhere.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")


def test_rectangle_mask_covers_its_percent_ranges():
    mask = rectangle_mask(40, 20, (25, 50), (0, 50))
    assert mask.shape == (20, 40) and mask.dtype == np.uint8
    rows, columns = np.nonzero(mask)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (0, 9, 10, 19)
    assert set(np.unique(mask)) == {0, 255}


def test_preview_tints_only_the_region_to_repaint():
    pixels = np.full((8, 8, 3), 100, np.uint8)
    mask = rectangle_mask(8, 8, (0, 50), (0, 100))
    tinted = preview(pixels, mask)
    assert (tinted[:, 4:] == 100).all()
    assert (tinted[:, :4] != 100).any(axis=-1).all()


def test_pipeline_options_of_text_img2img_and_inpainting():
    pixels = np.zeros((8, 8, 3), np.uint8)
    mask = rectangle_mask(8, 8, (0, 50), (0, 50))
    assert StartImage().pipeline_options() == {}
    assert StartImage(pixels, 0.5).pipeline_options().keys() == {"init_image", "strength"}
    options = StartImage(pixels, 0.6, mask, 2.0, 3).pipeline_options()
    assert options["mask"] is mask and options["strength"] == 0.6
    assert (options["mask_blur"], options["mask_padding"]) == (2.0, 3)


def test_generate_page_asks_for_a_start_image_before_a_mask_then_previews_it(data_dir):
    app = new_app()
    app.run()
    app.switch_page(page_path("generate")).run()
    app.radio(key="generate_mask_source").set_value("Mark a rectangle").run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "Reading the start image did not work: An inpainting mask applies to a start image: "
        "upload the start image above, or choose “No mask”."]
    assert next(b for b in app.button if b.label == "Generate").disabled

    app.file_uploader(key="generate_init_image").set_value(
        ("start.png", png_bytes(0, size=40), "image/png")).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert not next(b for b in app.button if b.label == "Generate").disabled
    assert any("generated anew" in caption
               for image in app.get("image") for caption in image.captions)
    # An uploaded mask that is not an image is one message.
    app.radio(key="generate_mask_source").set_value("Upload a mask").run()
    app.file_uploader(key="generate_mask").set_value(
        ("mask.png", b"not a picture", "image/png")).run()
    assert not app.exception
    assert len(app.error) == 1 and "'mask.png' is not an image" in app.error[0].value
