"""A procedural image world for the studio's embedded model: coloured shapes and their captions.

Everything is deterministic from a seed (NumPy's PCG64), so the base model's
training data, the classifier's and the demo's concept images are the same
on every machine. Images are drawn 4x larger and averaged down, which gives
anti-aliased edges without any image library.

The world holds two things on purpose that its vocabulary cannot say:

- the *unnamed concept*: a cross ("plus sign"). The base model sees it in
  training, but its captions only ever use generic words ("a red shape",
  "a red thing"), which also caption the named shapes now and then; so no
  single word makes the model draw it, and textual inversion has something
  real to find.
- the *instance*: a circle with red and cyan stripes. It never appears in
  base training, so DreamBooth has to teach it. Other shapes and colours do
  come striped (captioned "striped" or "with stripes"), as a real model
  knows stripes but not one particular striped object; without them the
  VAE never learned to draw stripes at all.
"""

import numpy as np

from studio.datasets.shapes_scene import ShapesScene

# Supersampling factor of the renderer (anti-aliasing by averaging).
SUPERSAMPLING = 4
# Shape radius as a fraction of the image side, per size word.
SIZE_RADII = {"small": 0.22, "large": 0.34}
# How far the centre may move from the middle, as a fraction of the side.
CENTER_JITTER = 0.08
# Half-width of a cross arm relative to the shape's radius.
CROSS_ARM_HALF_WIDTH = 0.36
# Bands of a striped shape across its diameter (colour, stripe colour, ...).
# Four bands are 5.4 px wide on a large shape, more than one pixel of the
# 4x VAE's latents: at six (3.6 px) the generated stripes blurred and the
# circle's outline with them.
INSTANCE_STRIPES = 4
# Share of named-shape captions that use a generic word instead of the name:
# it keeps the generic words from naming the cross.
GENERIC_CAPTION_RATE = 0.25
# Shares of captions that leave out the colour, the size, the background.
NO_COLOUR_RATE = 0.15
NO_SIZE_RATE = 0.5
NO_BACKGROUND_RATE = 0.3
# Share of the base-training scenes that show the cross.
CROSS_RATE = 0.25
# Share of the base-training scenes drawn striped (never as the instance).
STRIPED_RATE = 0.15
# Share of striped captions that say "with stripes" after the noun rather
# than "striped" before it.
STRIPES_AFTER_NOUN_RATE = 0.5


class ShapesWorld:
    """Scenes, images and captions of coloured shapes on plain backgrounds.

    Args:
        image_size: side of the rendered square images, in pixels.

    Example:

    ```python
    world = ShapesWorld(32)
    images, captions, scenes = world.sample(100, seed=0)
    world.render(ShapesScene("circle", "red", "black"))  # uint8 (32, 32, 3)
    ```
    """

    COLOURS = {
        "red": (220, 40, 40),
        "green": (40, 190, 60),
        "blue": (40, 80, 230),
        "yellow": (240, 220, 40),
        "purple": (150, 50, 200),
    }
    BACKGROUNDS = {
        "black": (15, 15, 15),
        "white": (240, 240, 240),
        "gray": (128, 128, 128),
    }
    NAMED_SHAPES = ("circle", "square", "triangle")
    UNNAMED_SHAPE = "cross"
    SHAPES = NAMED_SHAPES + (UNNAMED_SHAPE,)
    SIZES = tuple(SIZE_RADII)
    PATTERNS = ("plain", "striped")
    GENERIC_WORDS = ("shape", "thing")
    # The DreamBooth instance: a red-and-cyan striped circle.
    INSTANCE = {"shape": "circle", "colour": "red", "pattern": "striped"}
    # Cyan: unlike white, it stands out on every background and shape colour
    # (white stripes vanished into white backgrounds, taking the outline).
    INSTANCE_STRIPE_COLOUR = (80, 220, 230)

    def __init__(self, image_size=32):
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(
                f"`image_size` must be an integer >= 8. Received: image_size={image_size!r}"
            )
        self.image_size = image_size

    def get_config(self):
        return {"image_size": self.image_size}

    @classmethod
    def vocabulary_words(cls):
        """Every word a caption or an evaluation prompt of this world uses."""
        words = ["a", "an", "on", "background", "photo", "of", "the", "with", "stripes",
                 "striped", "sks", "picture", "drawing"]
        words += list(cls.COLOURS) + list(cls.BACKGROUNDS) + list(cls.NAMED_SHAPES)
        words += list(cls.SIZES) + list(cls.GENERIC_WORDS)
        return sorted(set(words))

    @classmethod
    def is_held_out(cls, shape, colour, background):
        """Whether a (shape, colour, background) combination is kept out of base training.

        About one in five combinations of named shapes is held out, spread
        so that every shape, colour and background still appears; the base
        model is scored on these.
        """
        if shape not in cls.NAMED_SHAPES:
            return False
        index = (
            cls.NAMED_SHAPES.index(shape)
            + 2 * list(cls.COLOURS).index(colour)
            + 3 * list(cls.BACKGROUNDS).index(background)
        )
        return index % 5 == 0

    @classmethod
    def held_out_combinations(cls):
        return [
            (shape, colour, background)
            for shape in cls.NAMED_SHAPES
            for colour in cls.COLOURS
            for background in cls.BACKGROUNDS
            if cls.is_held_out(shape, colour, background)
        ]

    @classmethod
    def is_instance(cls, scene):
        """Whether `scene` shows the DreamBooth instance (never in base training)."""
        return all(getattr(scene, name) == value for name, value in cls.INSTANCE.items())

    def random_scene(self, rng, shape=None, colour=None, background=None, pattern="plain"):
        """A scene with the given attributes and the others drawn from `rng`."""
        if shape is None:
            if rng.random() < CROSS_RATE:
                shape = self.UNNAMED_SHAPE
            else:
                shape = self.NAMED_SHAPES[rng.integers(len(self.NAMED_SHAPES))]
        colour = colour or list(self.COLOURS)[rng.integers(len(self.COLOURS))]
        background = background or list(self.BACKGROUNDS)[rng.integers(len(self.BACKGROUNDS))]
        size = self.SIZES[rng.integers(len(self.SIZES))]
        center = tuple(float(v) for v in 0.5 + rng.uniform(-CENTER_JITTER, CENTER_JITTER, 2))
        return ShapesScene(shape, colour, background, size, pattern, center)

    def caption(self, scene, rng):
        """A caption of `scene` from the world's grammar.

        "a [size] [colour] [striped] NOUN [with stripes] [on a BACKGROUND
        background]", where NOUN is the shape's name, or a generic word for
        the cross (always) and for the named shapes (now and then); a
        striped scene always says so, before or after the noun.
        """
        if scene.shape == self.UNNAMED_SHAPE or rng.random() < GENERIC_CAPTION_RATE:
            noun = self.GENERIC_WORDS[rng.integers(len(self.GENERIC_WORDS))]
        else:
            noun = scene.shape
        words = ["a"]
        if rng.random() >= NO_SIZE_RATE:
            words.append(scene.size)
        if rng.random() >= NO_COLOUR_RATE:
            words.append(scene.colour)
        striped_after = scene.pattern == "striped" and rng.random() < STRIPES_AFTER_NOUN_RATE
        if scene.pattern == "striped" and not striped_after:
            words.append("striped")
        words.append(noun)
        if striped_after:
            words += ["with", "stripes"]
        if rng.random() >= NO_BACKGROUND_RATE:
            words += ["on", "a", scene.background, "background"]
        return " ".join(words)

    def sample(self, count, seed, include_held_out=False):
        """Base-training data: `count` images, captions and scenes, from `seed`.

        Args:
            count: number of examples.
            seed: int; the same seed gives the same examples.
            include_held_out: False leaves out the held-out combinations.

        Returns:
            `(images, captions, scenes)`: uint8 `(count, size, size, 3)`,
            a list of str and a list of `ShapesScene`.
        """
        rng = np.random.default_rng(seed)
        images = np.empty((count, self.image_size, self.image_size, 3), np.uint8)
        captions, scenes = [], []
        while len(scenes) < count:
            pattern = "striped" if rng.random() < STRIPED_RATE else "plain"
            scene = self.random_scene(rng, pattern=pattern)
            if not include_held_out and self.is_held_out(
                scene.shape, scene.colour, scene.background
            ):
                continue
            if self.is_instance(scene):
                continue
            images[len(scenes)] = self.render(scene)
            captions.append(self.caption(scene, rng))
            scenes.append(scene)
        return images, captions, scenes

    def render(self, scene):
        """Draws `scene`; returns uint8 `(image_size, image_size, 3)`."""
        for name, value, allowed in (
            ("shape", scene.shape, self.SHAPES),
            ("colour", scene.colour, tuple(self.COLOURS)),
            ("background", scene.background, tuple(self.BACKGROUNDS)),
            ("size", scene.size, self.SIZES),
            ("pattern", scene.pattern, self.PATTERNS),
        ):
            if value not in allowed:
                raise ValueError(
                    f"A scene's `{name}` must be one of {allowed}. Received: {name}={value!r}"
                )
        side = self.image_size * SUPERSAMPLING
        # Pixel centres in [0, 1].
        y, x = np.mgrid[0:side, 0:side].astype(np.float32)
        x = (x + 0.5) / side - scene.center[0]
        y = (y + 0.5) / side - scene.center[1]
        radius = SIZE_RADII[scene.size]
        mask = _shape_mask(scene.shape, x, y, radius)
        canvas = np.empty((side, side, 3), np.float32)
        canvas[:] = self.BACKGROUNDS[scene.background]
        foreground = np.empty_like(canvas)
        foreground[:] = self.COLOURS[scene.colour]
        if scene.pattern == "striped":
            stripe = np.floor((y + radius) / (2 * radius) * INSTANCE_STRIPES).astype(int) % 2 == 1
            foreground[stripe] = self.INSTANCE_STRIPE_COLOUR
        canvas = np.where(mask[..., None], foreground, canvas)
        small = canvas.reshape(
            self.image_size, SUPERSAMPLING, self.image_size, SUPERSAMPLING, 3
        ).mean(axis=(1, 3))
        return np.clip(np.round(small), 0, 255).astype(np.uint8)


def _shape_mask(shape, x, y, radius):
    if shape == "circle":
        return x * x + y * y <= radius * radius
    if shape == "square":
        half = radius * 0.85
        return (np.abs(x) <= half) & (np.abs(y) <= half)
    if shape == "triangle":
        # Upright, its centroid at the centre.
        top, bottom = -radius, radius * 0.75
        inside_height = (y >= top) & (y <= bottom)
        half_width = (y - top) / (bottom - top) * radius * 1.05
        return inside_height & (np.abs(x) <= half_width)
    arm = radius * CROSS_ARM_HALF_WIDTH
    inside = (np.abs(x) <= radius) & (np.abs(y) <= radius)
    return inside & ((np.abs(x) <= arm) | (np.abs(y) <= arm))
