import hashlib
import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from studio.datasets.image_folder import ImageFolder
from studio.datasets.image_folder_report import ImageFolderReport
from studio.datasets.invalid_image_folder_error import InvalidImageFolderError
from studio.errors import StudioError

# JPEG is lossy: flat colours come back within this, away from colour edges.
JPEG_TOLERANCE = 12
# Rows or columns on each side of a colour edge that JPEG may blur.
JPEG_EDGE_MARGIN = 4


def assert_pixels(name, actual, expected):
    if name.lower().endswith(".jpg"):
        # Compare away from the edge between colour halves, within tolerance.
        edge = JPEG_EDGE_MARGIN
        difference = np.abs(actual.astype(int) - expected.astype(int))
        keep = np.ones(expected.shape[:2], bool)
        half = expected.shape[0] // 2
        keep[half - edge : half + edge] = False
        assert difference[keep].max() <= JPEG_TOLERANCE, name
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=name)


def test_report_lists_every_unusable_file_with_its_reason(mixed_folder):
    with pytest.raises(InvalidImageFolderError) as raised:
        ImageFolder(mixed_folder.path, resolution=mixed_folder.resolution)
    report = raised.value.report
    assert dict(report.problems) == mixed_folder.problems
    assert [name for name, _ in report.problems] == sorted(mixed_folder.problems)
    assert report.usable == tuple(sorted(mixed_folder.expected))
    assert report.ignored == tuple(sorted(mixed_folder.ignored))
    assert not report.ok
    message = str(raised.value)
    width = max(len(name) for name in mixed_folder.problems)
    for name, reason in mixed_folder.problems.items():
        assert f"  {name.ljust(width)}  {reason}\n" in message + "\n"
    assert message.startswith(
        f"Image folder {mixed_folder.path}: 9 usable images, 9 problems, 3 ignored files."
    )
    assert "skip_invalid=True" in message and "train on the 9 usable images" in message
    # A user error: the CLI prints it without a traceback.
    assert isinstance(raised.value, (StudioError, ValueError))


def test_skip_invalid_keeps_the_good_images_with_exact_pixels(mixed_folder, caplog):
    before = mixed_folder.snapshot()
    with caplog.at_level(logging.WARNING):
        folder = ImageFolder(
            mixed_folder.path, resolution=mixed_folder.resolution, skip_invalid=True
        )
    assert folder.names == sorted(mixed_folder.expected)
    assert folder.images.dtype == np.uint8
    assert folder.images.shape == (len(mixed_folder.expected), 32, 32, 3)
    for name, image in zip(folder.names, folder.images):
        assert_pixels(name, image, mixed_folder.expected[name])
    # The skipped files are logged, each with its reason.
    for name, reason in mixed_folder.problems.items():
        assert name in caplog.text and reason in caplog.text
    # The user's folder is only read.
    assert mixed_folder.snapshot() == before


def test_exif_rotated_photo_comes_out_upright(good_folder):
    folder = ImageFolder(good_folder.path, resolution=good_folder.resolution)
    image = folder.images[folder.names.index("rotated.jpg")].astype(int)
    # Upright: red on top, blue below (stored sideways it would be red left).
    assert np.abs(image[:12] - (255, 0, 0)).max() <= JPEG_TOLERANCE
    assert np.abs(image[20:] - (0, 0, 255)).max() <= JPEG_TOLERANCE


def test_good_folder_loads_without_report_problems(good_folder):
    folder = ImageFolder(good_folder.path, resolution=good_folder.resolution)
    assert folder.report.ok
    assert folder.report.problems == ()
    assert len(folder) == len(good_folder.expected)
    assert folder.paths[0] == os.path.join(good_folder.path, folder.names[0])


def test_captions_and_content_hashes(good_folder):
    folder = ImageFolder(good_folder.path, resolution=good_folder.resolution)
    captions = dict(zip(folder.names, folder.captions))
    assert captions["café crème ñ.png"] == ("a {} in a café",)
    assert captions["plain.bmp"] is None
    data = (good_folder.path / "plain.bmp").read_bytes()
    index = folder.names.index("plain.bmp")
    assert folder.content_hashes[index] == hashlib.sha256(data).hexdigest()


def test_caption_file_with_bom_and_blank_lines(tmp_path):
    Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "a.TXT").write_bytes("\ufeffa {} here\n\n  a {} there  \n".encode("utf-8"))
    folder = ImageFolder(tmp_path, resolution=32)
    assert folder.captions == [("a {} here", "a {} there")]


def test_empty_caption_file_is_a_problem(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "b.png")
    (tmp_path / "a.txt").write_text("\n  \n")
    with pytest.raises(InvalidImageFolderError) as raised:
        ImageFolder(tmp_path, resolution=32)
    assert raised.value.report.problems == (("a.txt", "caption of a.png is empty"),)
    assert raised.value.report.usable == ("b.png",)


def test_transparent_areas_take_the_chosen_background(good_folder):
    folder = ImageFolder(good_folder.path, resolution=32, background="#102030")
    image = folder.images[folder.names.index("rgba.png")]
    assert (image[:, :16] == (255, 0, 0)).all()
    assert (image[:, 16:] == (0x10, 0x20, 0x30)).all()
    folder = ImageFolder(good_folder.path, resolution=32, background=(0, 0, 0))
    image = folder.images[folder.names.index("palette.png")]
    assert (image[16:] == 0).all()


def test_large_jpeg_is_decoded_at_reduced_scale_to_the_same_picture(tmp_path):
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[:, :200] = (200, 30, 30)
    photo[:, 200:] = (30, 30, 200)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=95, subsampling=0)
    (tmp_path / "big.jpg").write_bytes(buffer.getvalue())
    image = ImageFolder(tmp_path, resolution=32).images[0].astype(int)
    assert np.abs(image[:, :12] - (200, 30, 30)).max() <= JPEG_TOLERANCE
    assert np.abs(image[:, 20:] - (30, 30, 200)).max() <= JPEG_TOLERANCE


def test_min_size_is_configurable(tmp_path):
    Image.new("RGB", (20, 40)).save(tmp_path / "small.png")
    with pytest.raises(InvalidImageFolderError) as raised:
        ImageFolder(tmp_path, resolution=64)
    assert raised.value.report.problems == (
        ("small.png", "too small: 20x40 pixels, the shorter side must be at least 32"),
    )
    assert ImageFolder(tmp_path, resolution=64, min_size=20).images.shape == (1, 64, 64, 3)


def test_folder_without_usable_images_is_an_error_even_when_skipping(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(InvalidImageFolderError, match="No usable image"):
        ImageFolder(tmp_path, resolution=32, skip_invalid=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidImageFolderError, match="0 usable images"):
        ImageFolder(empty, resolution=32, skip_invalid=True)


def test_sub_folders_are_not_searched(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "top.png")
    (tmp_path / "more.jpg").mkdir()
    (tmp_path / "more.jpg" / "inner.png").write_bytes(b"")
    assert ImageFolder(tmp_path, resolution=32).names == ["top.png"]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file"
)
def test_unreadable_file_is_reported(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "ok.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "locked.png")
    os.chmod(tmp_path / "locked.png", 0)
    with pytest.raises(InvalidImageFolderError) as raised:
        ImageFolder(tmp_path, resolution=32)
    assert raised.value.report.problems == (("locked.png", "cannot be read: Permission denied"),)


def test_bad_arguments(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="multiple of 8. Received: resolution=100"):
        ImageFolder(tmp_path, resolution=100)
    with pytest.raises(ValueError, match="Received: background='nope'"):
        ImageFolder(tmp_path, resolution=32, background="nope")
    with pytest.raises(ValueError, match="Received: min_size=0"):
        ImageFolder(tmp_path, resolution=32, min_size=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "missing", resolution=32)
    with pytest.raises(NotADirectoryError, match="which is a file"):
        ImageFolder(tmp_path / "a.png", resolution=32)


def test_get_config_rebuilds_the_same_folder(good_folder):
    folder = ImageFolder(good_folder.path, resolution=32, background="black")
    again = ImageFolder(**folder.get_config())
    assert again.names == folder.names
    np.testing.assert_array_equal(again.images, folder.images)


def test_report_format():
    report = ImageFolderReport(
        "/photos", ["a.png"], [("b.jpg", "empty file (0 bytes)"), ("long name.png", "why")],
        ["x.md"],
    )
    assert report.format() == (
        "Image folder /photos: 1 usable image, 2 problems, 1 ignored file.\n"
        "Files that cannot be used:\n"
        "  b.jpg          empty file (0 bytes)\n"
        "  long name.png  why\n"
        "Ignored (not images or captions): x.md"
    )
    assert ImageFolderReport("/p", ["a.png"]).format() == "Image folder /p: 1 usable image, 0 problems."
    assert ImageFolderReport("/p", ["a.png"]).ok


def test_embedded_colour_profiles_are_honoured_or_survived(tmp_path):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    picture = Image.new("RGB", (32, 32), (10, 100, 200))
    picture.save(tmp_path / "srgb.png", icc_profile=srgb)
    picture.save(tmp_path / "broken profile.png", icc_profile=b"not a profile")
    folder = ImageFolder(tmp_path, resolution=32)
    assert folder.names == ["broken profile.png", "srgb.png"]
    assert (folder.images == (10, 100, 200)).all()
