"""Issue 21, acceptance 4: `studio grid` writes a labelled X/Y grid whose PNG infotext round-trips.

The CLI test draws a real grid with the embedded `tiny-shapes` model; the
others replace the model with a stand-in pipeline (cells of one colour per
seed), so they check axes, file lookup and layout in milliseconds.
"""

import hashlib

import numpy as np
import pytest
from PIL import Image

from studio.cli.main import main
from studio.errors import InvalidInputError
from studio.grids import GridAxis, ParameterGrid
from studio.grids.grid_drawing import GRID_STYLE, MIN_CELL_SIZE
from studio.images import GenerationParameters, read_parameters
from studio.pipelines import GeneratedImages, GenerationRunner, GenerationSettings

# Commands and pages generate here; their compiled loop is tested elsewhere.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")

CELL = 32


def _ink_rows(pixels, left, right, top, bottom):
    """Whether the box holds drawn text (pixels far from the sheet's background)."""
    box = pixels[top:bottom, left:right].astype(int)
    return np.abs(box - np.array(GRID_STYLE.background)).max() > 100


def test_cli_grid_is_labelled_and_its_infotext_round_trips(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["grid", "--model", "tiny-shapes", "--prompt", "a red circle", "--steps", "2",
                 "--size", str(CELL), "--seed", "5", "--x-type", "seed", "--x-values", "5, 6",
                 "--y-type", "cfg", "--y-values", "3, 7.5", "--out", str(out)]) == 0
    pixels = np.asarray(Image.open(out))
    zoom = MIN_CELL_SIZE // CELL * CELL
    style = GRID_STYLE
    left = style.margin + style.row_label_width + style.gap
    top = style.margin + style.column_label_height + style.gap
    assert pixels.shape == (top + 2 * (zoom + style.gap) - style.gap + style.margin,
                            left + 2 * (zoom + style.gap) - style.gap + style.margin, 3)
    # A label above each column and beside each row; cells hold the images.
    for column in range(2):
        x = left + column * (zoom + style.gap)
        assert _ink_rows(pixels, x, x + zoom, style.margin, top - style.gap)
    for row in range(2):
        y = top + row * (zoom + style.gap)
        assert _ink_rows(pixels, style.margin, left - style.gap, y, y + zoom)
    corner = pixels[top:top + zoom, left:left + zoom]
    assert not np.array_equal(corner, pixels[top:top + zoom, left + zoom + style.gap:][:, :zoom])

    # The infotext: the first cell's parameters with A1111's X/Y/Z plot fields.
    text = Image.open(out).text["parameters"]
    assert "Seed: 5" in text and "CFG scale: 3" in text
    assert 'Script: X/Y/Z plot, X Type: Seed, X Values: "5,6", Y Type: CFG Scale, ' \
           'Y Values: "3,7.5"' in text
    parameters = read_parameters(out)
    assert GenerationParameters.from_infotext(parameters.to_infotext()) == parameters
    grid, notes = ParameterGrid.from_parameters(parameters)
    assert (grid.x, grid.y, grid.z) == (GridAxis("seed", [5, 6]), GridAxis("cfg", [3, 7.5]), None)
    expected = GenerationSettings("a red circle", model="tiny-shapes", steps=2, seed=5,
                                  width=CELL, height=CELL)
    original = ParameterGrid(expected, GridAxis("seed", [5, 6]), GridAxis("cfg", [3, 7.5]))
    for x in range(2):
        for y in range(2):
            assert grid.cell_settings(x, y) == original.cell_settings(x, y)
    assert notes == []


@pytest.mark.large
def test_grid_made_again_from_its_png_has_the_same_pixels(tmp_path):
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    assert main(["grid", "--model", "tiny-shapes", "--prompt", "a red circle", "--steps", "2",
                 "--size", str(CELL), "--x-type", "prompt_sr", "--x-values", "red, blue",
                 "--y-type", "sampler", "--y-values", "ddim, euler_a", "--out", str(first)]) == 0
    assert main(["grid", "--from-png", str(first), "--out", str(again)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(first)))


class _StandInPipeline:
    """Cells of one colour per (seed, guidance, strength of the first LoRA), no model."""

    def __init__(self, settings):
        self.settings = settings

    def __call__(self, prompt, seed=None, guidance_scale=7.5, num_steps=1, sampler="ddim",
                 width=None, height=None, negative_prompt="", **_):
        strength = self.settings.loras[0][1] if self.settings.loras else 0
        value = (seed * 40 + int(guidance_scale * 10) + int(strength * 7)) % 256
        parameters = GenerationParameters(prompt, negative_prompt, num_steps, sampler,
                                          guidance_scale, seed, width or CELL, height or CELL,
                                          model=self.settings.model)
        return GeneratedImages(np.full((1, CELL, CELL, 3), value, np.uint8), [parameters])


@pytest.fixture
def stand_in_runner(monkeypatch):
    monkeypatch.setattr(GenerationRunner, "pipeline", lambda self, settings: _StandInPipeline(settings))
    return GenerationRunner()


def _checkpoint_files(root, name, steps):
    """A run's checkpoints: files of one name in step folders, each with other bytes."""
    paths = []
    for step in steps:
        folder = root / f"step-{step:06d}"
        folder.mkdir(parents=True)
        path = folder / name
        # A safetensors header (length 2, "{}") then data, so the LoRA hash reads it too.
        path.write_bytes((2).to_bytes(8, "little") + b"{}" + f"step {step}".encode())
        paths.append(str(path))
    return paths


def test_concept_file_axes_round_trip_through_the_infotext(tmp_path, stand_in_runner):
    """A run's checkpoints share a file name; the hash in the infotext tells them apart."""
    embeddings = _checkpoint_files(tmp_path / "ti", "embedding.safetensors", (5, 10))
    loras = _checkpoint_files(tmp_path / "db", "lora.safetensors", (5, 10))
    grid = ParameterGrid(
        GenerationSettings("a photo of <toy>", model="tiny-shapes", steps=2, seed=1,
                           width=CELL, height=CELL),
        x=GridAxis("embedding", embeddings + ["none"]),
        y=GridAxis("lora", list(reversed(loras))),
        z=GridAxis("lora_strength", [0.5, 1]),
        lora_strength=0.8,
    )
    sheet = grid.generate(stand_in_runner)
    first = sheet.cell_parameters[0][0][0]
    assert [(r.name, r.strength) for r in first.loras] == [("lora", 0.5)]
    assert first.embeddings[0].short_hash == hashlib.sha256(
        open(embeddings[0], "rb").read()).hexdigest()[:12]
    sheet.save(tmp_path / "grid.png")

    read, _ = ParameterGrid.from_parameters(read_parameters(tmp_path / "grid.png"))
    assert (read.x, read.y, read.z) == (grid.x, grid.y, grid.z)
    for position in np.ndindex(*grid.shape):
        z, y, x = position
        assert read.cell_settings(x, y, z) == grid.cell_settings(x, y, z)
    # Two sheets side by side, each of three columns and two rows, labelled.
    assert sheet.image.size[0] > 2 * 3 * MIN_CELL_SIZE
    assert grid.y.value_labels() == ["step-000010/lora", "step-000005/lora"]
    assert grid.x.value_labels() == ["step-000005/embedding", "step-000010/embedding", "none"]


def test_seedless_grid_uses_one_seed_for_every_cell(stand_in_runner):
    grid = ParameterGrid(GenerationSettings("a cat", width=CELL, height=CELL),
                         x=GridAxis("cfg", [1, 2]))
    sheet = grid.generate(stand_in_runner)
    seeds = {p.seed for row in sheet.cell_parameters[0] for p in row}
    assert len(seeds) == 1 and None not in seeds


@pytest.mark.parametrize("make, message", [
    (lambda: GridAxis("colour", ["red"]), "A grid axis must be one of"),
    (lambda: GridAxis("seed", ["one"]), "The values of a seed axis are ints"),
    (lambda: GridAxis.from_a1111("Var. seed", "1,2"), "not one the studio can vary"),
    (lambda: GridAxis("prompt_sr", ["dog", "cat"]).apply(GenerationSettings("a red circle"), 1),
     "the prompt must contain it"),
    (lambda: ParameterGrid(GenerationSettings("x"), GridAxis("seed", [1]), GridAxis("seed", [2])),
     "one axis only"),
])
def test_bad_axes_are_messages(make, message):
    with pytest.raises(InvalidInputError, match=message):
        make()


def test_values_text_round_trips_commas_and_a1111_labels():
    axis = GridAxis("prompt", ["a cat, on a beach", "a dog"])
    assert GridAxis.from_a1111("Prompt", axis.values_text()) == axis
    assert GridAxis.from_a1111("CFG Scale", "3, 7.5") == GridAxis("cfg", [3.0, 7.5])
    assert GridAxis("prompt_sr", ["red", "blue"]).apply(
        GenerationSettings("a red circle", negative_prompt="red"), 1
    ) == GenerationSettings("a blue circle", negative_prompt="blue")


def test_a_picture_without_axes_is_a_message(tmp_path, capsys):
    from studio.images import save_png

    save_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "one.png",
             GenerationParameters("a cat", steps=2, model="tiny-shapes"))
    assert main(["grid", "--from-png", str(tmp_path / "one.png"),
                 "--out", str(tmp_path / "grid.png")]) == 2
    assert "not an X/Y/Z plot" in capsys.readouterr().err
    assert main(["grid", "--prompt", "a cat", "--out", str(tmp_path / "grid.png")]) == 2
    assert "needs an X axis" in capsys.readouterr().err
