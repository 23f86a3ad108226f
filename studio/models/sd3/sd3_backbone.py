"""Stable Diffusion 3 / 3.5 behind the seam: keras-hub's CLIP-L, CLIP-G, MMDiT and VAE."""

from keras import ops

from studio.errors import InvalidInputError
from studio.models.diffusion_backbone import DiffusionBackbone
from studio.models.latent_distribution import sample_latents
from studio.models.presets import SD3, SD3_FLOW_SCHEDULE, SD3_PRESETS
from studio.models.sd3.sd3_denoiser import SD3Denoiser
from studio.models.seeded_weights import set_seeded_random_weights

# `DiffusionBackbone.objective["type"]` of SD3: rectified flow (flow matching),
# built by `studio.trainers.objectives.FlowMatchingObjective`.
FLOW_MATCHING_OBJECTIVE = "flow_matching"

# Random networks are initialised from this seed unless told otherwise.
RANDOM_WEIGHTS_SEED = 0

# SD3's VAE: 8 pixels per latent along each side, as keras-hub assumes.
SD3_VAE_DOWNSAMPLING = 8

# The text encoders, whose token tables placeholder lookups join.
TEXT_ENCODERS = ("clip_l", "clip_g")


class SD3Backbone(DiffusionBackbone):
    """keras-hub's `StableDiffusion3Backbone` seen through the studio's seam.

    The networks are keras-hub's own (`keras_hub.models.
    StableDiffusion3Backbone`: CLIP-L and CLIP-G text encoders, an optional
    T5, the MMDiT and a 16-channel VAE with a latent shift and scale); this
    class only calls them the way the studio's pipelines and trainers expect:

    - `encode_text` -> `{"context", "pooled_projection"}`: the penultimate
      hidden states of CLIP-L and CLIP-G side by side, zero-padded to T5's
      width and, without a T5, by `max_sequence_length` zero tokens (as
      keras-hub's `encode_text_step` does), and the two pooled projections.
    - latents are `(vae latents - shift) * scale` (keras-hub's
      `ImageRescaling`); `decode_latents` undoes it.
    - `denoise` takes timesteps `sigma * num_train_timesteps` (floats) and
      returns the MMDiT's velocity `noise - x0`.

    Args:
        hub_backbone: a `keras_hub.models.StableDiffusion3Backbone`.
        tokenizer: a tokenizer whose ids fit both CLIP encoders (a studio
            `CLIPTokenizer`); its ids go to CLIP-L and CLIP-G alike.
        image_size: the resolution the model was trained at, in pixels.
        flow_schedule: `{"num_train_timesteps", "shift"}` of the training
            schedule (keras-hub's scheduler holds the same numbers).
        name: the preset name the backbone came from.

    Example:

    ```python
    backbone = SD3Backbone.from_preset("tiny-sd3")
    conditioning = backbone.encode_text(backbone.tokenizer(["a photo of a cat"]))
    conditioning["pooled_projection"]  # float32 (1, 32 + 48)
    ```
    """

    family = SD3

    def __init__(self, hub_backbone, tokenizer, image_size=1024, flow_schedule=None, name=""):
        self.hub_backbone = hub_backbone
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.flow_schedule = dict(flow_schedule or SD3_FLOW_SCHEDULE)
        self.name = name

    # --- The networks ------------------------------------------------------

    @property
    def clip_l(self):
        return self.hub_backbone.clip_l

    @property
    def clip_g(self):
        return self.hub_backbone.clip_g

    @property
    def mmdit(self):
        """keras-hub's `MMDiT` (the backbone's `diffuser`)."""
        return self.hub_backbone.diffuser

    @property
    def vae(self):
        return self.hub_backbone.vae

    @property
    def text_encoders(self):
        """keras-hub's CLIP encoders by `TEXT_ENCODERS` name (the keys of embedding files)."""
        return {name: getattr(self.hub_backbone, name) for name in TEXT_ENCODERS}

    @property
    def components(self):
        """The networks by name: what a trainer freezes and a test snapshots."""
        return {**self.text_encoders, "mmdit": self.mmdit, "vae": self.vae}

    # --- Text conditioning -------------------------------------------------

    def encode_text(self, token_ids, token_lookup=None, training=False):
        """CLIP-L and CLIP-G -> `{"context": (b, 2 * length, width), "pooled_projection": (b, l + g)}`.

        Args:
            token_ids: int `(batch, length)` for both encoders, or a dict
                `{"clip_l": ids, "clip_g": ids}`.
            token_lookup: None, or a dict `{"clip_l": lookup, "clip_g": lookup}`
                of callables ids -> token vectors (`PlaceholderEmbedding`s on
                `token_embeddings[name]`); an encoder missing from the dict
                reads its own table.
            training: whether the text encoders run in training mode.
        """
        if not isinstance(token_ids, dict):
            token_ids = {name: token_ids for name in TEXT_ENCODERS}
        if token_lookup is not None and not isinstance(token_lookup, dict):
            raise InvalidInputError(
                "An SD3 token lookup is a dict by text encoder, since CLIP-L and "
                f"CLIP-G have tables of different widths. Expected keys from "
                f"{TEXT_ENCODERS}. Received: token_lookup={token_lookup!r}"
            )
        token_lookup = token_lookup or {}
        hub = self.hub_backbone
        outputs = {}
        for name in TEXT_ENCODERS:
            ids = ops.cast(token_ids[name], "int32")
            encoder = getattr(hub, name)
            lookup = token_lookup.get(name)
            if lookup is None:
                encoded = encoder({"token_ids": ids}, training=training)
                pooling_ids = ids
            else:
                encoded = _encode_token_vectors(encoder, lookup(ids), training)
                # keras-hub pools at the largest id (CLIP's end token is the
                # last id of its vocabulary); placeholder ids, added after
                # it, must not win.
                end_id = self.tokenizer.end_token_id
                pooling_ids = ops.where(ids > end_id, 0, ids)
            projection = getattr(hub, f"{name}_projection")
            outputs[name] = (
                projection(encoded["sequence_output"], pooling_ids, training=training),
                encoded["intermediate_output"],
            )
        pooled, context = hub.clip_concatenate(
            outputs["clip_l"][0],
            outputs["clip_g"][0],
            outputs["clip_l"][1],
            outputs["clip_g"][1],
            padding=hub.t5_hidden_dim - hub.clip_hidden_dim,
        )
        if hub.t5 is not None:
            raise NotImplementedError(
                "SD3 with a T5 encoder is not supported yet: the studio's SD3 "
                "presets hold CLIP-L and CLIP-G only (keras-hub pads T5's part)."
            )
        # Without T5, keras-hub appends max_sequence_length zero tokens where
        # T5's context would be; the MMDiT was trained seeing them.
        context = ops.pad(context, [[0, 0], [0, self.clip_l.max_sequence_length], [0, 0]])
        return {
            "context": ops.cast(context, "float32"),
            "pooled_projection": ops.cast(pooled, "float32"),
        }

    @property
    def token_embeddings(self):
        """The token tables by text encoder (`TEXT_ENCODERS`), which placeholder lookups join."""
        return {
            name: getattr(self.hub_backbone, name).embedding.token_embedding
            for name in TEXT_ENCODERS
        }

    @property
    def token_embedding(self):
        """CLIP-L's token table: the one `token_table_hash` names the base model by."""
        return self.token_embeddings["clip_l"]

    @property
    def text_compute_dtype(self):
        return self.clip_l.compute_dtype

    # --- Latent codec ------------------------------------------------------

    @property
    def latent_scale(self):
        return float(self.vae.scale)

    @property
    def latent_shift(self):
        return float(self.vae.shift)

    @property
    def vae_encoder(self):
        """The VAE's encoder, pixels in [-1, 1] -> moments (what the latent cache runs)."""
        return self.vae.encoder

    @property
    def vae_decoder(self):
        """The VAE's decoder, unscaled latents -> pixels (what `decode_latents` runs)."""
        return self.vae.decoder

    def encode_moments(self, pixels, training=False):
        return self.vae.encoder(pixels, training=training)

    def sample_latents(self, moments, noise=None):
        """Moments -> `(sample - latent_shift) * latent_scale`, float32."""
        return (sample_latents(moments, noise) - self.latent_shift) * self.latent_scale

    def decode_latents(self, latents):
        latents = ops.cast(latents, "float32") / self.latent_scale + self.latent_shift
        return self.vae.decoder(latents, training=False)

    @property
    def latent_channels(self):
        return int(self.hub_backbone.latent_channels)

    @property
    def latent_downsampling(self):
        """Pixels per latent along each side (8 for SD3's VAE)."""
        return 2 ** (len(self.vae.encoder_num_filters) - 1)

    # --- Denoiser and objective ----------------------------------------------

    def denoise(self, latents, timesteps, conditioning, training=False):
        """The MMDiT's velocity (`noise - x0`) at `timesteps = sigma * num_train_timesteps`."""
        batch = ops.shape(latents)[0]
        timesteps = ops.broadcast_to(ops.reshape(ops.cast(timesteps, "float32"), (-1,)), (batch,))
        inputs = {"latents": latents, "timesteps": timesteps, **conditioning}
        return self.denoiser(inputs, training=training)

    @property
    def denoiser(self):
        """The MMDiT behind the studio's denoiser inputs (`SD3Denoiser`), made once."""
        if getattr(self, "_denoiser", None) is None:
            self._denoiser = SD3Denoiser(self.mmdit, name="sd3_denoiser")
        return self._denoiser

    @property
    def prediction_type(self):
        return "flow"

    @property
    def noise_schedule(self):
        return dict(self.flow_schedule)

    @property
    def objective(self):
        """Flow matching on the preset's schedule and latent shift / scale."""
        return {
            "type": FLOW_MATCHING_OBJECTIVE,
            **self.flow_schedule,
            "latent_scale": self.latent_scale,
            "latent_shift": self.latent_shift,
        }

    # --- Presets -----------------------------------------------------------

    @classmethod
    def from_preset(cls, preset, load_weights=True, weights=None, vocabulary=None, dtype=None,
                    seed=RANDOM_WEIGHTS_SEED):  # fmt: skip
        """Builds `tiny-sd3`, or loads a keras-hub SD3 preset with keras-hub's `from_preset`.

        Args:
            preset: a name of `SD3_PRESETS`: `tiny-sd3` or a keras-hub name
                (`stable_diffusion_3.5_medium`, ...; keras-hub finds it in
                the Kaggle cache or an attached Kaggle model, else downloads).
            load_weights: False builds keras-hub's networks with random weights.
            weights: must be None: keras-hub finds its presets' files itself
                (Kaggle cache or attached model); the argument exists because
                `studio.interop.load_backbone` passes it to every family.
            vocabulary: a local CLIP vocabulary file or folder for the
                tokenizer of a keras-hub preset (None: the Keras cache).
            dtype: a dtype policy for the networks; None keeps Keras' global one.
            seed: seeds `tiny-sd3`'s weights, drawn with NumPy
                (`seeded_weights.py`): the same model on every backend.
        """
        if preset not in SD3_PRESETS:
            raise InvalidInputError(
                f"Unknown SD3 preset. Expected one of {sorted(SD3_PRESETS)}. "
                f"Received: preset={preset!r}"
            )
        if weights is not None:
            raise InvalidInputError(
                "SD3 presets take no `weights`: keras-hub loads its own files (a Kaggle "
                f"download, or the model attached to a notebook). Received: weights={weights!r}"
            )
        spec = SD3_PRESETS[preset]
        if "keras_hub_preset" in spec:
            import keras_hub

            from studio.models.stable_diffusion_backbone import _build_tokenizer

            hub = keras_hub.models.StableDiffusion3Backbone.from_preset(
                spec["keras_hub_preset"], load_weights=load_weights, dtype=dtype
            )
            tokenizer = _build_tokenizer({"type": "clip", "sequence_length": 77}, vocabulary)
            return cls(hub, tokenizer, image_size=hub.image_shape[0],
                       flow_schedule={"num_train_timesteps": hub.num_train_timesteps,
                                      "shift": hub.shift}, name=preset)  # fmt: skip
        return cls.from_spec(spec, name=preset, load_weights=load_weights, vocabulary=vocabulary,
                             dtype=dtype, seed=seed)

    @classmethod
    def from_spec(cls, spec, name="", load_weights=True, vocabulary=None, dtype=None,
                  seed=RANDOM_WEIGHTS_SEED):  # fmt: skip
        """Builds keras-hub's networks from a preset's class arguments (`SD3_PRESETS` entries).

        Seeded random weights first; with `load_weights`, a spec with
        `packaged_weights` then gets its shipped files (`tiny-shapes-sd3`:
        tiny-shapes' text encoder re-expressed as CLIP-L and CLIP-G, its own
        MMDiT and VAE). `from_preset` calls it; pretraining calls it with
        the measured latent shift and scale in `spec["vae"]`.
        """
        from studio.models.stable_diffusion_backbone import _build_tokenizer

        hub = _build_hub_backbone(spec, dtype)
        if seed is not None:
            set_seeded_random_weights(hub, seed, "sd3")
        if load_weights and spec.get("packaged_weights"):
            _load_packaged_weights(name, hub, spec["packaged_weights"], dtype)
        return cls(
            hub,
            _build_tokenizer(spec["tokenizer"], vocabulary),
            image_size=spec["image_size"],
            flow_schedule=spec["flow_schedule"],
            name=name,
        )


def _build_hub_backbone(spec, dtype):
    """keras-hub's `StableDiffusion3Backbone` from a preset's class arguments."""
    import keras_hub
    from keras_hub.src.models.vae.vae_backbone import VAEBackbone

    clip_l = keras_hub.models.CLIPTextEncoder(**spec["clip_l"], dtype=dtype, name="clip_l")
    clip_g = keras_hub.models.CLIPTextEncoder(**spec["clip_g"], dtype=dtype, name="clip_g")
    vae = VAEBackbone(**spec["vae"], dtype=dtype, name="vae")
    # keras-hub sizes the MMDiT's latents as image_shape / 8 (SD3's VAE); a
    # VAE with fewer levels (tiny-shapes-sd3: 4x, 32 px -> 8x8 latents) is
    # given the image size whose eighth is its latent size.
    downsampling = 2 ** (len(spec["vae"]["encoder_num_filters"]) - 1)
    size = spec["image_size"] * SD3_VAE_DOWNSAMPLING // downsampling
    return keras_hub.models.StableDiffusion3Backbone(
        **spec["mmdit"],
        vae=vae,
        clip_l=clip_l,
        clip_g=clip_g,
        image_shape=(size, size, 3),
        **spec["flow_schedule"],
        dtype=dtype,
    )


def _load_packaged_weights(preset, hub, packaged_weights, dtype):
    """A packaged SD3-family preset's networks from the files inside the package.

    `packaged_weights` is `{"text_encoders": <SD preset>, "mmdit": prefix,
    "vae": prefix}`: the SD preset's shipped text encoder, re-expressed as
    CLIP-L and CLIP-G (`re_express_clip_in_sd3`), and the files
    `<prefix>_mmdit.weights.h5` and `<prefix>_vae.weights.h5`.
    """
    from studio.models.presets import BACKBONE_PRESETS
    from studio.models.sd3.sd3_clip_re_expression import re_express_clip_in_sd3
    from studio.models.stable_diffusion_backbone import _load_packaged_weights as load_sd_weights

    text_preset = packaged_weights["text_encoders"]
    source = _build_source_text_encoder(text_preset, dtype)
    load_sd_weights(text_preset, BACKBONE_PRESETS[text_preset]["packaged_weights"],
                    {"text_encoder": source})
    re_express_clip_in_sd3(source, hub)
    load_sd_weights(preset, {name: packaged_weights[name] for name in ("mmdit", "vae")},
                    {"mmdit": hub.diffuser, "vae": hub.vae})


def _build_source_text_encoder(preset, dtype):
    """The studio `CLIPTextEncoder` of an SD-family preset, built with random weights."""
    from studio.models.presets import BACKBONE_PRESETS
    from studio.models.stable_diffusion_backbone import _build_networks

    return _build_networks(BACKBONE_PRESETS[preset], dtype, ("text_encoder",))["text_encoder"]


def _encode_token_vectors(encoder, token_vectors, training):
    """keras-hub's `CLIPTextEncoder` from token vectors instead of ids.

    The functional model starts at ids; its layers are called here in the
    same order (token vectors + positions, the blocks, the final norm), so
    a lookup that returns the encoder's own rows gives its own outputs.
    """
    x = ops.cast(token_vectors, encoder.compute_dtype)
    x = x + encoder.embedding.position_embedding(x)
    intermediate = None
    for index, block in enumerate(encoder.encoder_layers):
        x = block(x, training=training)
        if index == encoder.intermediate_output_index:
            intermediate = x
    return {"sequence_output": encoder.layer_norm(x), "intermediate_output": intermediate}


__all__ = ["SD3Backbone", "FLOW_MATCHING_OBJECTIVE"]
