"""PNG files that carry their generation parameters.

The parameters go in a `parameters` tEXt/iTXt chunk, where AUTOMATIC1111 and
the PNG-info readers built for it look for them.
"""

import numpy as np
from PIL import Image, PngImagePlugin

from studio.files.atomic_write import atomic_file
from studio.images.generation_parameters import GenerationParameters

PARAMETERS_CHUNK = "parameters"


def save_png(image, path, parameters=None):
    """Writes `image` as a PNG, atomically, with its generation parameters.

    The file is written to a temporary name in the same folder and renamed
    into place, so a crash never leaves a half-written image.

    Args:
        image: uint8 array (height, width, 3) or a PIL image.
        path: where to write the PNG.
        parameters: a `GenerationParameters`, an infotext string, or None.
    """
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(
                "Expected a uint8 image of shape (height, width, 3). "
                f"Received: dtype={array.dtype}, shape={array.shape}"
            )
        image = Image.fromarray(array)
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        text = (
            parameters.to_infotext()
            if isinstance(parameters, GenerationParameters)
            else str(parameters)
        )
        # iTXt keeps non-Latin-1 prompts intact; A1111 reads both kinds.
        info.add_itxt(PARAMETERS_CHUNK, text)
    with atomic_file(path) as file:
        image.save(file, format="PNG", pnginfo=info)
    return path


def read_parameters(path):
    """Reads the generation parameters of a PNG written by us or by A1111.

    Returns:
        A `GenerationParameters`, or None if the file has no parameters chunk.
    """
    with Image.open(path) as image:
        image.load()
        text = image.text.get(PARAMETERS_CHUNK) if hasattr(image, "text") else None
    if text is None:
        return None
    return GenerationParameters.from_infotext(text)
