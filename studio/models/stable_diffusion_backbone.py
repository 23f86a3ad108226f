"""The Stable Diffusion networks and tokenizer, loaded together from a preset."""

import os
import random
import shutil

import keras
import numpy as np

from studio.errors import InvalidInputError
from studio.errors import WeightsNotFoundError
from studio.files.atomic_write import atomic_folder
from studio.files.json_file import read_json, write_json
from studio.models.diffusion_backbone import DiffusionBackbone, compute_token_table_hash
from studio.models.legacy_h5_weights import load_legacy_h5_weights
from studio.models.seeded_weights import set_seeded_random_weights
from studio.models.presets import BACKBONE_PRESETS, COMPONENTS, STABLE_DIFFUSION
from studio.models.weight_file_resolver import resolve_weight_files

# Random networks are initialised from this seed unless told otherwise.
RANDOM_WEIGHTS_SEED = 0
# A saved preset folder holds this file and one `<component>.weights.h5` each.
PRESET_CONFIG_FILE = "backbone.json"
# backbone.json's record of `token_table_hash` (not a constructor argument).
TOKEN_TABLE_HASH_KEY = "token_table_hash"
# The family of SD 1.x / 2.x presets and of the tiny ones (a preset's "family").
STABLE_DIFFUSION_FAMILY = STABLE_DIFFUSION
# The objective type `studio.trainers.objectives` builds for this family.
DDPM_OBJECTIVE = "ddpm"
# A diffusers folder has one of these; `studio.interop.load_backbone` converts it.
_DIFFUSERS_MARKERS = ("model_index.json", os.path.join("unet", "config.json"))


class StableDiffusionBackbone(DiffusionBackbone):
    """Text encoder, UNet, VAE encoder and decoder, and their tokenizer (SD 1.x / 2.x).

    The networks know nothing of sampling or training: pipelines
    (`studio.pipelines`) and trainers (`studio.trainers`) use them through
    the seam of `DiffusionBackbone` (`encode_text`, `with_token_lookup`,
    `encode_images`, `decode_latents`, `denoise`, `objective`).

    Args:
        text_encoder: a `CLIPTextEncoder`.
        unet: a `UNet`.
        vae_encoder: a `VAEEncoder`.
        vae_decoder: a `VAEDecoder`.
        tokenizer: a `CLIPTokenizer` whose ids fit the text encoder.
        prediction_type: what the UNet predicts, "epsilon" or "v_prediction".
        latent_scale: factor between VAE latents and the UNet's latents.
        image_size: the resolution the model was trained at, in pixels.
        noise_schedule: the training noise schedule's arguments (a dict for
            `studio.schedulers.NoiseSchedule`).
        name: the preset name or path the backbone came from.

    Example:

    ```python
    backbone = StableDiffusionBackbone.from_preset("tiny")
    conditioning = backbone.encode_text(backbone.tokenizer(["a photo of a cat"]))
    conditioning["context"]  # float32 (1, 77, 32)
    ```
    """

    family = STABLE_DIFFUSION_FAMILY
    # The networks and tokenizers a preset, a saved folder and the
    # constructor name (a family with more, SDXL, lists its own).
    component_names = COMPONENTS
    tokenizer_names = ("tokenizer",)

    def __init__(
        self,
        text_encoder,
        unet,
        vae_encoder,
        vae_decoder,
        tokenizer,
        prediction_type="epsilon",
        latent_scale=0.18215,
        image_size=512,
        noise_schedule=None,
        name="",
    ):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                "`prediction_type` must be 'epsilon' or 'v_prediction'. "
                f"Received: prediction_type={prediction_type!r}"
            )
        self.text_encoder = text_encoder
        self.unet = unet
        self.vae_encoder = vae_encoder
        self.vae_decoder = vae_decoder
        self.tokenizer = tokenizer
        self.prediction_type = prediction_type
        self.latent_scale = latent_scale
        self.image_size = image_size
        self.noise_schedule = dict(noise_schedule or {})
        self.name = name

    @property
    def components(self):
        """The networks by name, in `component_names` order."""
        return {name: getattr(self, name) for name in self.component_names}

    # --- The seam (see `DiffusionBackbone`) -------------------------------

    def encode_text(self, token_ids, token_lookup=None, training=False):
        """The CLIP text encoder's hidden states: `{"context": (batch, length, width)}`.

        With a `token_lookup` (placeholder vectors joined to the frozen
        table), the encoder runs on the looked-up vectors instead of its
        own table's.
        """
        if token_lookup is None:
            context = self.text_encoder(token_ids, training=training)
        else:
            context = self.text_encoder.encode_token_embeddings(token_lookup(token_ids))
        return {"context": context}

    @property
    def token_embedding(self):
        """The text encoder's token table, which placeholder lookups join (read only)."""
        return self.text_encoder.token_embedding

    @property
    def text_compute_dtype(self):
        """The dtype token vectors enter the text encoder in."""
        return self.text_encoder.compute_dtype

    def encode_moments(self, pixels, training=False):
        return self.vae_encoder(pixels, training=training)

    def decode_latents(self, latents):
        return self.vae_decoder(latents / self.latent_scale)

    def denoise(self, latents, timesteps, conditioning, training=False):
        return self.unet(
            {"latents": latents, "timesteps": timesteps, **conditioning}, training=training
        )

    @property
    def denoiser(self):
        """The denoising network (the UNet), which `GuidedDenoiser` compiles."""
        return self.unet

    @property
    def latent_channels(self):
        return self.unet.latent_channels

    @property
    def latent_downsampling(self):
        """Pixels per latent along each side (8 for SD)."""
        return self.vae_decoder.upsampling_factor

    @property
    def objective(self):
        """DDPM with the preset's prediction type, noise schedule and latent scale."""
        return {
            "type": DDPM_OBJECTIVE,
            "prediction_type": self.prediction_type,
            "noise_schedule": dict(self.noise_schedule),
            "latent_scale": self.latent_scale,
        }

    @classmethod
    def from_preset(
        cls,
        preset,
        load_weights=True,
        weights=None,
        vocabulary=None,
        dtype=None,
        seed=RANDOM_WEIGHTS_SEED,
    ):
        """Builds the backbone of a preset, with its weights.

        Args:
            preset: a name of `BACKBONE_PRESETS` ("sd-v1", "sd-v2", "tiny")
                or a folder written by `save_to_preset`. Diffusers folders
                and single files (`.safetensors`, `.ckpt`) are converted by
                `studio.interop.load_backbone`, which takes all four.
            load_weights: False builds the networks with random weights.
            weights: where the preset's published weight files are: None for
                the Keras cache (downloaded once), a folder holding them, or a
                dict component -> file or folder.
            vocabulary: a local CLIP vocabulary file or folder (None: the
                Keras cache, downloaded once).
            dtype: a dtype policy for the networks ("float32",
                "mixed_float16", "mixed_bfloat16"); None keeps Keras' global
                policy.
            seed: seeds the initialisation of networks whose weights are not
                loaded, drawn with NumPy (`seeded_weights.py`), so a random
                preset (`tiny`) is the same model in every process and on
                every backend. None keeps Keras' own random initialisation.

        Raises:
            ValueError: for an unknown preset name, or a model to convert
                (a diffusers folder or a single file).
            WeightsNotFoundError: when weight files are neither local nor
                downloadable; one message lists every missing file.
        """
        if _is_model_to_import(preset):
            raise InvalidInputError(
                f"{preset} is a model to convert, not a preset: `from_preset` takes "
                "preset names and folders saved by `save_to_preset`. Load it with "
                f"`studio.interop.load_backbone`. Received: preset={preset!r}"
            )
        if os.path.isdir(str(preset)):
            return cls._from_saved_preset(preset, load_weights, dtype)
        if preset not in BACKBONE_PRESETS:
            raise InvalidInputError(
                f"Unknown preset. Expected one of {sorted(BACKBONE_PRESETS)}, "
                "a folder saved with `StableDiffusionBackbone.save_to_preset`, "
                "a diffusers folder or a .safetensors / .ckpt file. "
                f"Received: preset={preset!r}"
            )
        spec = BACKBONE_PRESETS[preset]
        if load_weights and spec.get("imported_weights"):
            raise WeightsNotFoundError(
                f"The weights of preset '{preset}' are not downloaded: give your model file "
                "or diffusers folder instead (--model sd_xl_base_1.0.safetensors, or "
                f"`studio.interop.load_backbone('{preset}', weights=<file or folder>)`); "
                "`load_weights=False` builds the networks with random weights. "
                f"Received: preset={preset!r}"
            )
        # Report every missing file at once: offline, the user fetches them
        # together.
        weight_paths, tokenizers, missing = {}, {}, []
        if load_weights and spec.get("weights"):
            try:
                weight_paths = resolve_weight_files(preset, spec["weights"], weights)
            except WeightsNotFoundError as error:
                missing.append(str(error))
        try:
            for tokenizer_name in cls.tokenizer_names:
                tokenizers[tokenizer_name] = _build_tokenizer(spec[tokenizer_name], vocabulary)
        except FileNotFoundError as error:
            missing.append(str(error))
        if missing:
            raise WeightsNotFoundError("\n\n".join(missing))
        if seed is not None and len(weight_paths) < len(cls.component_names):
            _seed_random_state(seed)
        networks = _build_networks(spec, dtype, cls.component_names)
        for component, path in weight_paths.items():
            load_legacy_h5_weights(networks[component], path)
        if load_weights and spec.get("packaged_weights"):
            _load_packaged_weights(preset, spec["packaged_weights"], networks)
        elif seed is not None:
            for component, network in networks.items():
                if component not in weight_paths:
                    set_seeded_random_weights(network, seed, component)
        return cls(
            **tokenizers,
            prediction_type=spec["prediction_type"],
            latent_scale=spec["latent_scale"],
            image_size=spec["image_size"],
            noise_schedule=spec["noise_schedule"],
            name=preset,
            **networks,
        )

    def get_config(self):
        """Everything but the weights, as JSON-serialisable data."""
        return {
            "family": self.family,
            "prediction_type": self.prediction_type,
            "latent_scale": self.latent_scale,
            "image_size": self.image_size,
            "noise_schedule": self.noise_schedule,
            **{name: getattr(self, name).get_config() for name in self.tokenizer_names},
            **{
                name: {
                    "class_name": network.__class__.__name__,
                    "config": _network_config(network),
                }
                for name, network in self.components.items()
            },
        }

    def save_to_preset(self, directory):
        """Saves config, tokenizer and weights to a folder `from_preset` reads.

        The folder is written under a temporary name and renamed into place,
        so an interrupted save never leaves a half-written preset.
        """
        directory = os.path.abspath(directory)
        with atomic_folder(directory, overwrite=True) as staging:
            config = self.get_config()
            for tokenizer_name in self.tokenizer_names:
                config[tokenizer_name] = _save_tokenizer(getattr(self, tokenizer_name), staging)
            # Fresh, not cached: a fine-tuned table is another base model.
            self._token_table_hash = compute_token_table_hash(self)
            config[TOKEN_TABLE_HASH_KEY] = self._token_table_hash
            for name, network in self.components.items():
                network.save_weights(os.path.join(staging, f"{name}.weights.h5"))
            write_json(os.path.join(staging, PRESET_CONFIG_FILE), config)
        return directory

    @classmethod
    def _from_saved_preset(cls, directory, load_weights, dtype):
        config_path = os.path.join(directory, PRESET_CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise WeightsNotFoundError(
                f"{directory} is not a saved studio model: it has no "
                f"{PRESET_CONFIG_FILE}. Save one with "
                "`StableDiffusionBackbone.save_to_preset`, give a diffusers folder "
                "(model_index.json, unet/, ...), or name a preset: "
                f"{sorted(BACKBONE_PRESETS)}."
            )
        config = read_json(config_path)
        tokenizers = {
            name: _load_tokenizer(config[name], directory) for name in cls.tokenizer_names
        }
        networks = _build_networks(config, dtype, cls.component_names)
        if load_weights:
            for name, network in networks.items():
                network.load_weights(os.path.join(directory, f"{name}.weights.h5"))
        backbone = cls(
            **tokenizers,
            prediction_type=config["prediction_type"],
            latent_scale=config["latent_scale"],
            image_size=config["image_size"],
            noise_schedule=config["noise_schedule"],
            name=os.path.basename(os.path.normpath(directory)),
            **networks,
        )
        # Folders saved before the hash existed have none: computed on demand.
        if load_weights and config.get(TOKEN_TABLE_HASH_KEY):
            backbone._token_table_hash = config[TOKEN_TABLE_HASH_KEY]
        return backbone


def _seed_random_state(seed):
    """Seeds Python's and NumPy's random state (and TensorFlow's, under it).

    `keras.utils.set_random_seed` would import TensorFlow under any
    backend; the weights themselves are drawn by `set_seeded_random_weights`.
    """
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)


def _is_model_to_import(preset):
    """True for a single file or a diffusers folder, which `studio.interop` converts."""
    path = str(preset)
    if os.path.isfile(path):
        return True
    return os.path.isdir(path) and not os.path.isfile(
        os.path.join(path, PRESET_CONFIG_FILE)
    ) and any(os.path.isfile(os.path.join(path, marker)) for marker in _DIFFUSERS_MARKERS)


def _network_config(network):
    config = dict(network.get_config())
    # Keras adds these; they are not constructor choices of ours.
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    return config


def _build_networks(spec, dtype, component_names=COMPONENTS):
    from studio.models import network_classes

    classes = network_classes()
    networks = {}
    for name in component_names:
        entry = spec[name]
        network_class = classes[entry["class_name"]]
        kwargs = dict(entry["config"])
        if dtype is not None:
            kwargs["dtype"] = dtype
        networks[name] = network_class(name=name, **kwargs)
    return networks


def _build_tokenizer(spec, vocabulary):
    from studio.tokenizers import CLIPTokenizer

    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"] == "byte_level":
        return CLIPTokenizer.byte_level(**kwargs)
    if spec["type"] == "shapes_world":
        from studio.tokenizers.shapes_world_vocabulary import shapes_world_tokenizer

        return shapes_world_tokenizer(**kwargs)
    return CLIPTokenizer.from_vocabulary_file(vocabulary, **kwargs)


def packaged_weights_path(prefix, component):
    """Where a preset's weights shipped inside the package (`studio.pretrained`) are."""
    import studio.pretrained

    folder = os.path.dirname(os.path.abspath(studio.pretrained.__file__))
    return os.path.join(folder, f"{prefix}_{component}.weights.h5")


def packaged_weights_prefixes(packaged_weights, names):
    """Component -> file prefix of a preset's `packaged_weights`.

    It is one prefix for every network, or a dict by component, so that a
    preset can share another's files (tiny-shapes-xl has tiny-shapes' VAE).
    """
    if isinstance(packaged_weights, str):
        return {name: packaged_weights for name in names}
    return {name: packaged_weights[name] for name in names}


def _load_packaged_weights(preset, packaged_weights, networks):
    prefixes = packaged_weights_prefixes(packaged_weights, networks)
    paths = {name: packaged_weights_path(prefixes[name], name) for name in networks}
    missing = [path for path in paths.values() if not os.path.isfile(path)]
    if missing:
        raise WeightsNotFoundError(
            f"The weights of preset '{preset}' ship with the package, but these "
            f"files are missing: {missing}. Reinstall keras-sd-studio, or rebuild "
            "them with `studio train base`. Received: preset={preset!r}"
        )
    for name, network in networks.items():
        network.load_weights(paths[name])


def _save_tokenizer(tokenizer, directory):
    """Returns the tokenizer's config, copying a CLIP vocabulary file along.

    A saved preset must load offline, so the vocabulary travels with it.
    """
    from studio.tokenizers import CLIP_VOCABULARY_FILENAME, get_clip_vocabulary_path

    config = tokenizer.get_config()
    if config["vocabulary_source"] == "clip_file":
        source = get_clip_vocabulary_path(config["vocabulary_file"])
        shutil.copyfile(source, os.path.join(directory, CLIP_VOCABULARY_FILENAME))
        config["vocabulary_file"] = CLIP_VOCABULARY_FILENAME
    return config


def _load_tokenizer(config, directory):
    from studio.tokenizers import CLIPTokenizer

    config = dict(config)
    local = config.get("vocabulary_file")
    if local and not os.path.isabs(local):
        config["vocabulary_file"] = os.path.join(directory, local)
    return CLIPTokenizer.from_config(config)
