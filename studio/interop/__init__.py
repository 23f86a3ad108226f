"""Model interop: diffusers folders and original single-file checkpoints.

Imports Stable Diffusion 1.x and 2.x models from a diffusers folder or a
single `.safetensors` / `.ckpt` file (read without running pickle code)
into a `StableDiffusionBackbone`, and exports a backbone (a DreamBooth
result) back to both, so it opens in diffusers and AUTOMATIC1111. The
weight names live in one table per network (`unet_names`, `vae_names`,
`text_encoder_names`). `load_backbone` takes any of these or a preset name
or saved folder, as the `--model` option does. Importing this package
imports neither Keras nor TensorFlow; the loaders do, when called.
"""

from studio.interop.backbone_loader import load_backbone
from studio.interop.checkpoint_format_error import CheckpointFormatError
from studio.interop.diffusers_folder import export_diffusers_folder
from studio.interop.diffusers_folder import import_diffusers_folder
from studio.interop.model_import import import_model
from studio.interop.single_file_checkpoint import describe_single_file
from studio.interop.single_file_checkpoint import export_single_file
from studio.interop.single_file_checkpoint import import_single_file
from studio.interop.unsupported_model_error import UnsupportedModelError

__all__ = [
    "CheckpointFormatError",
    "UnsupportedModelError",
    "describe_single_file",
    "export_diffusers_folder",
    "export_single_file",
    "import_diffusers_folder",
    "import_model",
    "import_single_file",
    "load_backbone",
]
