"""Regenerates tests/embeddings/fixtures/: small embedding files written by PyTorch.

The suite checks that files written by PyTorch's own `torch.save` and by
`safetensors.torch.save_file`, in the layouts AUTOMATIC1111, diffusers and
kohya use, load here with the right vectors, also where PyTorch is not
installed. These fixtures are such files, a few KB each, with vectors 8
wide (12 for SD-XL's clip_g) so that they stay small.

How they were made: with a CPU build of PyTorch 2.13 (`pip install
torch==2.13.0`) and safetensors 0.8, by running, from the repository root:

    python tests/embeddings/make_fixtures.py

The vectors come from `fixture_values`, which the tests call too (this
module imports torch only in `main`), so the expected values are computed,
not stored. Rerunning rewrites the files; their vectors stay the same.
"""

import os

import numpy as np

FIXTURES_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
WIDTH = 8
SDXL_CLIP_G_WIDTH = 12
# float32 bits below the 16 that bfloat16 keeps.
BFLOAT16_DROPPED_BITS = 16
BFLOAT16_HALFWAY = 0x7FFF

# file name -> what it holds. "vectors": token -> (shape, seed, dtype) as
# the file stores them; "layout" is how the file was written (see `main`);
# "format", "placeholders" and "dtype" are what `load_embedding` must report.
FIXTURES = {
    "a1111_torch.pt": {
        "layout": "a1111",
        "vectors": {"<fixture-a1111>": ((2, WIDTH), 1, "float32")},
        "format": "a1111",
        "dtype": "float32",
        "step": 500,
        "sd_checkpoint": "7460a6fa",
        "sd_checkpoint_name": "v1-5-pruned-emaonly",
    },
    "a1111_parameterdict.pt": {
        # The original textual-inversion code and A1111 on PyTorch 1.11
        # pickled a whole ParameterDict; the token is the file's name.
        "layout": "a1111_parameterdict",
        "vectors": {"a1111_parameterdict": ((1, WIDTH), 2, "float32")},
        "format": "a1111",
        "dtype": "float32",
    },
    "diffusers_learned_embeds.bin": {
        # Early diffusers scripts saved one vector, 1-D.
        "layout": "torch_dict",
        "vectors": {"<fixture-diffusers>": ((WIDTH,), 3, "float32")},
        "format": "diffusers",
        "dtype": "float32",
    },
    "diffusers_two_tokens.safetensors": {
        "layout": "safetensors_dict",
        "vectors": {"<a>": ((1, WIDTH), 4, "float32"), "<b>": ((3, WIDTH), 5, "float32")},
        "format": "diffusers",
        "dtype": "float32",
    },
    "diffusers_legacy.bin": {
        # PyTorch's pre-1.6 layout (not a zip).
        "layout": "torch_dict_legacy",
        "vectors": {"<legacy>": ((2, WIDTH), 9, "float32")},
        "format": "diffusers",
        "dtype": "float32",
    },
    "kohya_fp16.safetensors": {
        "layout": "kohya_safetensors",
        "vectors": {"kohya_fp16": ((2, WIDTH), 6, "float16")},
        "format": "kohya",
        "dtype": "float16",
    },
    "kohya_bf16.safetensors": {
        "layout": "kohya_safetensors",
        "vectors": {"kohya_bf16": ((2, WIDTH), 7, "bfloat16")},
        "format": "kohya",
        "dtype": "bfloat16",
    },
    "kohya_torch.pt": {
        "layout": "kohya_torch",
        "vectors": {"kohya_torch": ((3, WIDTH), 8, "float32")},
        "format": "kohya",
        "dtype": "float32",
    },
    "sdxl.safetensors": {
        "layout": "safetensors_dict",
        "vectors": {
            "clip_l": ((2, WIDTH), 10, "float32"),
            "clip_g": ((2, SDXL_CLIP_G_WIDTH), 11, "float32"),
        },
        "format": "sd-xl",
        "dtype": "float32",
    },
}

# What kohya's sd-scripts write (ModelSpec), abridged.
KOHYA_METADATA = {
    "modelspec.sai_model_spec": "1.0.1",
    "modelspec.architecture": "stable-diffusion-v1/textual-inversion",
    "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
    "modelspec.title": "TextualInversion@1700000000.0",
    "modelspec.resolution": "512x512",
    "modelspec.prediction_type": "epsilon",
}


def fixture_values(shape, seed):
    """Deterministic float32 values with full mantissas, in [-1, 1).

    float64 multiplication and fmod are exact IEEE operations, so every
    platform computes the same bits.
    """
    count = int(np.prod(shape))
    values = np.arange(count, dtype=np.float64) * 0.7071067811865476 + seed * 0.1
    return (np.fmod(values, 2.0) - 1.0).astype(np.float32).reshape(shape)


def round_to_bfloat16(values):
    """float32 -> the nearest bfloat16 (ties to even), as float32, as torch rounds."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    lowest_kept = (bits >> BFLOAT16_DROPPED_BITS) & 1
    rounded = ((bits + BFLOAT16_HALFWAY + lowest_kept) >> BFLOAT16_DROPPED_BITS) << BFLOAT16_DROPPED_BITS
    return rounded.astype(np.uint32).view(np.float32)


def expected_values(shape, seed, dtype):
    """The values a fixture's tensor holds, as `load_embedding` returns them."""
    values = fixture_values(shape, seed)
    if dtype == "float16":
        return values.astype(np.float16)
    if dtype == "bfloat16":
        return round_to_bfloat16(values)
    return values


def main():
    import torch
    from safetensors.torch import save_file

    def tensor(shape, seed, dtype):
        return torch.from_numpy(fixture_values(shape, seed)).to(getattr(torch, dtype))

    os.makedirs(FIXTURES_FOLDER, exist_ok=True)
    for name, spec in FIXTURES.items():
        path = os.path.join(FIXTURES_FOLDER, name)
        tensors = {key: tensor(*entry) for key, entry in spec["vectors"].items()}
        (first, *_) = tensors.values()
        layout = spec["layout"]
        if layout == "a1111":
            # As AUTOMATIC1111's Embedding.save writes it: the vectors
            # require grad (they were being trained).
            first.requires_grad = True
            torch.save(
                {
                    "string_to_token": {"*": 265},
                    "string_to_param": {"*": first},
                    "name": next(iter(tensors)),
                    "step": spec["step"],
                    "sd_checkpoint": spec["sd_checkpoint"],
                    "sd_checkpoint_name": spec["sd_checkpoint_name"],
                },
                path,
            )
        elif layout == "a1111_parameterdict":
            parameters = torch.nn.ParameterDict({"*": torch.nn.Parameter(first)})
            torch.save(
                {"string_to_token": {"*": torch.tensor(265)}, "string_to_param": parameters},
                path,
            )
        elif layout == "torch_dict":
            torch.save(tensors, path)
        elif layout == "torch_dict_legacy":
            torch.save(tensors, path, _use_new_zipfile_serialization=False)
        elif layout == "safetensors_dict":
            save_file(tensors, path, metadata={"format": "pt"})
        elif layout == "kohya_safetensors":
            save_file({"emb_params": first}, path, metadata=KOHYA_METADATA)
        elif layout == "kohya_torch":
            torch.save({"emb_params": first}, path)
        else:
            raise ValueError(f"Unknown layout. Received: {layout!r}")
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
