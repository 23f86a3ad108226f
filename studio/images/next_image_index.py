"""`next_image_index(folder)`: the number the next generated image in a folder gets."""

import os
import re

# Generated images are named NNNNN-SEED.png.
_IMAGE_NAME = re.compile(r"\d{5}-.*\.png")


def next_image_index(folder):
    """The index after the highest `NNNNN-*.png` already in `folder` (0 when none, or no folder)."""
    indices = [
        int(name[:5])
        for name in (os.listdir(folder) if os.path.isdir(folder) else [])
        if _IMAGE_NAME.fullmatch(name)
    ]
    return max(indices, default=-1) + 1
