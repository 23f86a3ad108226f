"""`render_concept_set(folder)`: images of the shapes world's unnamed concept, the cross."""

import os

# Images in the demo's concept set.
CONCEPT_IMAGES = 5


def render_concept_set(folder, count=CONCEPT_IMAGES, seed=0):
    """Writes `count` cross images with caption files into `folder`; returns their paths.

    The captions describe everything but the shape, which they leave as
    `{}` for the placeholder: a textual-inversion data set of a shape the
    `tiny-shapes` model saw in training, but no word names.
    """
    import numpy as np
    from PIL import Image

    from studio.datasets.shapes_world import ShapesWorld

    world = ShapesWorld(32)
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    colours = list(ShapesWorld.COLOURS)
    for index in range(count):
        scene = world.random_scene(rng, shape=ShapesWorld.UNNAMED_SHAPE,
                                   colour=colours[index % len(colours)])
        path = os.path.join(folder, f"cross_{index}.png")
        Image.fromarray(world.render(scene)).save(path)
        captions = [
            f"a {scene.colour} {{}} on a {scene.background} background",
            f"a {scene.size} {scene.colour} {{}}",
            f"a {scene.colour} {{}}",
        ]
        with open(os.path.join(folder, f"cross_{index}.txt"), "w", encoding="utf-8") as file:
            file.write("\n".join(captions) + "\n")
        paths.append(path)
    return paths
