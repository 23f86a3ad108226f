"""SDXL: two CLIP text encoders, a UNet with added conditioning, SD's VAE at another scale.

The networks are the Stable Diffusion blocks at the top of `studio.models`
with SDXL's options (`CLIPTextEncoder`'s penultimate states and pooled
projection, `UNet`'s per-level transformer depth and added conditioning);
this package holds what is SDXL's own: the backbone and its micro-conditioning.
"""

from studio.models.sdxl.sdxl_backbone import SDXLBackbone

__all__ = ["SDXLBackbone"]
