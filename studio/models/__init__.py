"""The Stable Diffusion networks in Keras 3 (`keras.layers` and `keras.ops` only).

Importing this package imports neither TensorFlow nor keras_cv, so it runs
on any Keras backend (tests/test_backend_isolation.py checks this under JAX).
"""

from studio.models.clip_text_encoder import CLIPTextEncoder
from studio.models.diffusion_backbone import DiffusionBackbone
from studio.models.image_preprocessor import ImagePreprocessor
from studio.models.model_families import FAMILIES, backbone_class, family_of
from studio.models.presets import BACKBONE_PRESETS, COMPONENTS
from studio.models.stable_diffusion_backbone import StableDiffusionBackbone
from studio.models.token_lookup_view import TokenLookupView
from studio.models.unet import UNet
from studio.models.vae_decoder import VAEDecoder
from studio.models.vae_encoder import VAEEncoder


def network_classes():
    """Network classes by name, as presets and saved configs refer to them."""
    return {
        cls.__name__: cls for cls in (CLIPTextEncoder, UNet, VAEEncoder, VAEDecoder)
    }

