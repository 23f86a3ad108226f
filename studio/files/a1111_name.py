"""A1111's name for a file: what its prompts, infotext and pickers call it."""

import os


def a1111_name(path):
    """The file's name without folder and extension (`embeddings/my-toy.pt` -> `my-toy`).

    AUTOMATIC1111 names an embedding or LoRA file so (`<lora:my-toy:0.8>`,
    `Lora hashes: "my-toy: ..."`), and gives an embedding that does not
    name its token (SD-XL's and SD3's `{clip_l, clip_g}` files) that token.
    """
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]
