"""The SDXL networks and tokenizers, behind the seam of `DiffusionBackbone`."""

import numpy as np
from keras import ops

from studio.models.presets import SDXL, SDXL_LATENT_SCALE
from studio.models.stable_diffusion_backbone import StableDiffusionBackbone

# Keys of the two text encoders, as the `{clip_l, clip_g}` embedding files
# (kohya, A1111, ComfyUI) name them; a token lookup for SDXL is a dict of them.
CLIP_L = "clip_l"
CLIP_G = "clip_g"
ENCODER_KEYS = (CLIP_L, CLIP_G)


class SDXLBackbone(StableDiffusionBackbone):
    """CLIP ViT-L and OpenCLIP ViT-bigG, SDXL's UNet, its VAE, and their tokenizers.

    `encode_text` returns everything the UNet is conditioned on: the
    `context` (both encoders' penultimate hidden states side by side), the
    pooled, projected bigG vector as `text_embeds`, and the six
    micro-conditioning `time_ids` (original height and width, crop top and
    left, target height and width) for an uncropped image of `image_size`;
    `time_ids(...)` makes them for other sizes.

    Both tokenizers share SDXL's vocabulary and differ only in padding
    (ViT-L pads with the end token, bigG with "!"), so one array of
    `tokenizer` ids serves both encoders: bigG's copy has `tokenizer_2`'s
    pad id after the first end token. A dict `{"clip_l": ids, "clip_g":
    ids}` gives each encoder its own (two prompts). Placeholder tokens live
    in `tokenizer` (the same ids in both tables); a token lookup is a dict
    of one lookup per encoder, `{"clip_l": ..., "clip_g": ...}`.

    Saving, loading and the preset machinery are `StableDiffusionBackbone`'s,
    over this family's networks and tokenizers.

    Args:
        text_encoder: a `CLIPTextEncoder` (ViT-L) with
            `hidden_states_layer="penultimate"`, `return_pooled=True`.
        text_encoder_2: a `CLIPTextEncoder` (bigG), penultimate, pooled,
            with a `projection_dim`.
        unet: a `UNet` with `pooled_text_dim` (its `context_dim` the sum of
            the encoders' widths).
        vae_encoder, vae_decoder: SD's VAE networks.
        tokenizer, tokenizer_2: `CLIPTokenizer`s of one vocabulary.
        prediction_type, latent_scale, image_size, noise_schedule, name: as
            `StableDiffusionBackbone`'s (SDXL: epsilon, 0.13025, 1024).

    Raises:
        ValueError: networks that do not fit together.
    """

    family = SDXL
    component_names = ("text_encoder", "text_encoder_2", "unet", "vae_encoder", "vae_decoder")
    tokenizer_names = ("tokenizer", "tokenizer_2")

    def __init__(
        self,
        text_encoder,
        text_encoder_2,
        unet,
        vae_encoder,
        vae_decoder,
        tokenizer,
        tokenizer_2,
        prediction_type="epsilon",
        latent_scale=SDXL_LATENT_SCALE,
        image_size=1024,
        noise_schedule=None,
        name="",
    ):
        super().__init__(
            text_encoder=text_encoder,
            unet=unet,
            vae_encoder=vae_encoder,
            vae_decoder=vae_decoder,
            tokenizer=tokenizer,
            prediction_type=prediction_type,
            latent_scale=latent_scale,
            image_size=image_size,
            noise_schedule=noise_schedule,
            name=name,
        )
        self.text_encoder_2 = text_encoder_2
        self.tokenizer_2 = tokenizer_2
        _check_fit(text_encoder, text_encoder_2, unet)

    # --- Text conditioning -------------------------------------------------

    def encode_text(self, token_ids, token_lookup=None, training=False):
        """Both encoders -> `{"context", "text_embeds", "time_ids"}` (float32).

        Args:
            token_ids: int `(batch, length)` from `tokenizer` (both encoders
                read them), or `{"clip_l": ids, "clip_g": ids}`.
            token_lookup: None, or `{"clip_l": lookup, "clip_g": lookup}`:
                callables ids -> token vectors of each encoder's width.
            training: whether the encoders run in training mode.

        Raises:
            ValueError: a token lookup that is not such a dict.
        """
        ids_l, ids_g = self._encoder_token_ids(token_ids)
        lookups = _lookups(token_lookup)
        outputs_l = _run_encoder(self.text_encoder, ids_l, lookups[CLIP_L], training)
        outputs_g = _run_encoder(self.text_encoder_2, ids_g, lookups[CLIP_G], training)
        context = ops.concatenate(
            [outputs_l["hidden_states"], outputs_g["hidden_states"]], axis=-1
        )
        batch = ops.shape(context)[0]
        time_ids = ops.convert_to_tensor(
            self.time_ids(self.image_size, self.image_size), "float32"
        )
        return {
            "context": context,
            "text_embeds": outputs_g["pooled"],
            "time_ids": ops.tile(time_ids[None, :], (batch, 1)),
        }

    def time_ids(self, height, width, crop_top=0, crop_left=0, original_size=None):
        """SDXL's six micro-conditioning ids for one image, as float32 numpy `(6,)`.

        Args:
            height, width: the target size in pixels.
            crop_top, crop_left: the crop's top-left corner (0 for none).
            original_size: `(height, width)` of the image before cropping and
                resizing; None for the target size.
        """
        original = (height, width) if original_size is None else tuple(original_size)
        return np.array([*original, crop_top, crop_left, height, width], "float32")

    def _encoder_token_ids(self, token_ids):
        if isinstance(token_ids, dict):
            return token_ids[CLIP_L], token_ids[CLIP_G]
        ids = ops.convert_to_tensor(token_ids, "int32")
        end, pad = self.tokenizer.end_token_id, self.tokenizer_2.pad_token_id
        if pad == end:
            return ids, ids
        is_end = ops.cast(ops.equal(ids, end), "int32")
        # Strictly after the first end token: bigG's padding.
        after_end = ops.cumsum(is_end, axis=1) - is_end > 0
        return ids, ops.where(after_end, ops.cast(pad, "int32"), ids)

    @property
    def token_embeddings(self):
        """Both encoders' token tables, `{"clip_l": ..., "clip_g": ...}` (read only)."""
        return {
            CLIP_L: self.text_encoder.token_embedding,
            CLIP_G: self.text_encoder_2.token_embedding,
        }


def _run_encoder(encoder, token_ids, lookup, training):
    if lookup is None:
        return encoder(token_ids, training=training)
    return encoder.encode_token_embeddings(lookup(token_ids), token_ids)


def _lookups(token_lookup):
    if token_lookup is None:
        return {CLIP_L: None, CLIP_G: None}
    if not isinstance(token_lookup, dict) or set(token_lookup) != set(ENCODER_KEYS):
        raise ValueError(
            "An SDXL token lookup is one lookup per text encoder: a dict with keys "
            f"{list(ENCODER_KEYS)}. Received: {type(token_lookup).__name__}"
            + (f" with keys {sorted(token_lookup)}" if isinstance(token_lookup, dict) else "")
        )
    return token_lookup


def _check_fit(text_encoder, text_encoder_2, unet):
    """Raises a ValueError when the encoders' outputs are not what the UNet takes."""
    width = text_encoder.hidden_dim + text_encoder_2.hidden_dim
    pooled = text_encoder_2.projection_dim or text_encoder_2.hidden_dim
    problems = []
    for label, encoder in (("text_encoder", text_encoder), ("text_encoder_2", text_encoder_2)):
        if not encoder.return_pooled:
            problems.append(f"{label} must return pooled vectors (return_pooled=True)")
    if unet.context_dim != width:
        problems.append(
            f"the UNet's context_dim={unet.context_dim} must be the encoders' widths "
            f"together ({text_encoder.hidden_dim} + {text_encoder_2.hidden_dim})"
        )
    if unet.pooled_text_dim != pooled:
        problems.append(
            f"the UNet's pooled_text_dim={unet.pooled_text_dim} must be text_encoder_2's "
            f"pooled width {pooled}"
        )
    if problems:
        raise ValueError("The SDXL networks do not fit together: " + "; ".join(problems) + ".")
