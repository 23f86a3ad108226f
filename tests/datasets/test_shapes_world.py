import numpy as np
import pytest

from studio.datasets.shapes_scene import ShapesScene
from studio.datasets.shapes_world import ShapesWorld


def test_sample_is_deterministic_from_the_seed():
    world = ShapesWorld(32)
    images_a, captions_a, scenes_a = world.sample(20, seed=3)
    images_b, captions_b, scenes_b = world.sample(20, seed=3)
    images_c, _, _ = world.sample(20, seed=4)
    np.testing.assert_array_equal(images_a, images_b)
    assert captions_a == captions_b and scenes_a == scenes_b
    assert not np.array_equal(images_a, images_c)
    assert images_a.shape == (20, 32, 32, 3) and images_a.dtype == np.uint8


def test_render_draws_the_colours_where_the_shape_is():
    world = ShapesWorld(32)
    image = world.render(ShapesScene("square", "red", "white"))
    np.testing.assert_array_equal(image[16, 16], ShapesWorld.COLOURS["red"])
    np.testing.assert_array_equal(image[0, 0], ShapesWorld.BACKGROUNDS["white"])


def test_shapes_differ_from_each_other():
    world = ShapesWorld(32)
    images = [world.render(ShapesScene(s, "blue", "black")) for s in ShapesWorld.SHAPES]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i].astype(int) - images[j]).sum() > 0


def test_the_cross_is_never_named_and_the_generic_words_are_not_only_crosses():
    world = ShapesWorld(32)
    _, captions, scenes = world.sample(600, seed=0)
    generic = [s.shape for c, s in zip(captions, scenes)
               if any(w in c.split() for w in ShapesWorld.GENERIC_WORDS)]
    assert all("cross" not in caption for caption in captions)
    assert all(
        any(w in c.split() for w in ShapesWorld.GENERIC_WORDS)
        for c, s in zip(captions, scenes) if s.shape == "cross"
    )
    assert "cross" in generic and len(set(generic)) == len(ShapesWorld.SHAPES)


def test_base_training_holds_out_combinations_and_never_shows_the_instance():
    world = ShapesWorld(32)
    _, _, scenes = world.sample(500, seed=1)
    held_out = set(ShapesWorld.held_out_combinations())
    assert held_out
    assert not any((s.shape, s.colour, s.background) in held_out for s in scenes)
    assert not any(ShapesWorld.is_instance(s) for s in scenes)
    striped = [s for s in scenes if s.pattern == "striped"]
    # Stripes are known on other shapes and colours, red circles come plain.
    assert 0.05 < len(striped) / len(scenes) < 0.3
    assert {s.shape for s in striped} == set(ShapesWorld.SHAPES)
    assert any(s.shape == "circle" for s in striped)
    assert any(s.colour == "red" for s in striped)
    assert any(s.shape == "circle" and s.colour == "red" for s in scenes)


def test_striped_scenes_say_so_in_their_captions():
    world = ShapesWorld(32)
    _, captions, scenes = world.sample(300, seed=3)
    for caption, scene in zip(captions, scenes):
        words = caption.split()
        says_striped = "striped" in words or "stripes" in words
        assert says_striped == (scene.pattern == "striped"), caption


def test_captions_use_only_vocabulary_words():
    world = ShapesWorld(32)
    _, captions, _ = world.sample(200, seed=2)
    words = set(ShapesWorld.vocabulary_words())
    assert {w for c in captions for w in c.split()} <= words


def test_bad_scene_names_the_value():
    with pytest.raises(ValueError, match="Received: shape='hexagon'"):
        ShapesWorld(32).render(ShapesScene("hexagon", "red", "white"))
