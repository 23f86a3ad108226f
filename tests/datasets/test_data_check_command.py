import numpy as np
import pytest
from PIL import Image

from studio.cli.main import main
from studio.datasets.contact_sheet import make_contact_sheet


def test_data_check_prints_the_report_and_writes_the_contact_sheet(mixed_folder, tmp_path, capsys):
    before = mixed_folder.snapshot()
    sheet_path = tmp_path / "sheet.png"
    code = main(["data", "check", str(mixed_folder.path), "--resolution", "32",
                 "--out", str(sheet_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"Image folder {mixed_folder.path}: 9 usable images, 9 problems" in out
    for name, reason in mixed_folder.problems.items():
        assert name in out and reason in out
    assert f"Contact sheet of the 9 usable images: {sheet_path}" in out
    with Image.open(sheet_path) as sheet:
        # 9 images: 3 x 3 tiles of 160 px, 4 px gaps, 16 px labels.
        assert sheet.size == (3 * 164 + 4, 3 * 180 + 4)
        pixels = np.asarray(sheet.convert("RGB"))
    # The first tile (sorted names: WIDE.PNG) is its crop, scaled up: yellow.
    assert (pixels[4 + 10 : 4 + 150, 4 + 10 : 4 + 150] == (255, 255, 0)).all()
    assert mixed_folder.snapshot() == before


def test_clean_folder_exits_zero(good_folder, tmp_path, capsys):
    code = main(["data", "check", str(good_folder.path), "--resolution", "32",
                 "--out", str(tmp_path / "s.png")])
    assert code == 0
    assert "9 usable images, 0 problems." in capsys.readouterr().out


def test_default_sheet_goes_to_the_working_folder(good_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "check", str(good_folder.path), "--resolution", "32"]) == 0
    assert (tmp_path / "good photos-contact-sheet.png").is_file()


def test_folder_without_images_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["data", "check", str(tmp_path / "empty"), "--resolution", "32",
                 "--out", str(tmp_path / "s.png")])
    assert code == 2
    assert "No usable image" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


def test_sheet_inside_the_folder_is_refused(good_folder, capsys):
    code = main(["data", "check", str(good_folder.path), "--resolution", "32",
                 "--out", str(good_folder.path / "sheet.png")])
    assert code == 2
    assert "outside the image folder" in capsys.readouterr().err
    assert not (good_folder.path / "sheet.png").exists()


def test_data_without_action_prints_help(capsys):
    assert main(["data"]) == 2
    assert "check" in capsys.readouterr().out


def test_contact_sheet_layout_and_labels():
    images = np.zeros((5, 8, 8, 3), np.uint8)
    images[:, :, :] = np.arange(5)[:, None, None, None] * 50
    sheet = make_contact_sheet(images, [f"a very long file name number {i}.png" for i in range(5)],
                               tile_size=20, columns=2)
    assert sheet.size == (2 * 24 + 4, 3 * 40 + 4)
    pixels = np.asarray(sheet)
    assert (pixels[4 + 40 + 5, 4 + 24 + 5] == 150).all()  # row 1, column 1: image 3
    with pytest.raises(ValueError, match="Received: 5 images, 4 labels"):
        make_contact_sheet(images, ["a"] * 4)


def test_file_instead_of_folder_is_a_usage_error(good_folder, tmp_path, capsys):
    code = main(["data", "check", str(good_folder.path / "plain.bmp"), "--resolution", "32",
                 "--out", str(tmp_path / "s.png")])
    assert code == 2
    assert "which is a file" in capsys.readouterr().err
