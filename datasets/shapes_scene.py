"""One picture of the shapes world, as data: what is drawn and where."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ShapesScene:
    """What `ShapesWorld.render` draws.

    Attributes:
        shape: "circle", "square", "triangle", or "cross" (the world's
            unnamed concept: no caption names it).
        colour: foreground colour name, a key of `ShapesWorld.COLOURS`.
        background: background colour name, a key of
            `ShapesWorld.BACKGROUNDS`.
        size: "small" or "large".
        pattern: "plain", or "striped" (the DreamBooth instance's pattern,
            never in base training).
        center: (x, y) of the shape's centre, as fractions of the image side.
    """

    shape: str
    colour: str
    background: str
    size: str = "large"
    pattern: str = "plain"
    center: tuple = (0.5, 0.5)
