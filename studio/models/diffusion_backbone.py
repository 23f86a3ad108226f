"""The seam every model family's backbone offers to pipelines, trainers and evaluation."""

from studio.models.image_preprocessor import ImagePreprocessor
from studio.models.latent_distribution import sample_latents
from studio.models.token_table_hash import token_table_hash


class DiffusionBackbone:
    """Base of the backbones: text conditioning, denoiser, latent codec, objective as data.

    Pipelines (`studio.pipelines`), trainers (`studio.trainers`) and the
    evaluation use only these methods and attributes, so a new family (SDXL:
    two text encoders and pooled embeddings; SD3: three encoders and flow
    matching) is a subclass that implements them, plus presets whose
    `family` names it and, for training, an objective registered for its
    `objective["type"]` in `studio.trainers.objectives`.

    Subclasses set `tokenizer`, `name`, `image_size`, `prediction_type`,
    `noise_schedule` and `latent_scale`, and implement `encode_text`,
    `encode_moments`, `decode_latents` (and its network, `vae_decoder`),
    `denoise`, `denoiser`,
    `objective`, `latent_channels`, `latent_downsampling`, and the
    `token_embedding` table (with `text_compute_dtype`) that placeholder
    lookups join.

    Attributes:
        image_preprocessor: the `ImagePreprocessor` of the family's pixel range.
    """

    # Key of `FAMILIES` in `studio.models` and of a preset's "family".
    family = None
    image_preprocessor = ImagePreprocessor()

    # --- Text conditioning ------------------------------------------------

    def encode_text(self, token_ids, token_lookup=None, training=False):
        """All of the family's text encoders -> what the denoiser is conditioned on.

        Args:
            token_ids: int `(batch, length)`, from `tokenizer`.
            token_lookup: None (the encoders' own token tables), or a
                callable token ids -> token vectors `(batch, length, width)`
                that also knows placeholder ids (a `PlaceholderEmbedding`).
            training: whether the text encoders run in training mode (they
                are fine-tuned).

        Returns:
            A dict of the denoiser's conditioning inputs by name (for Stable
            Diffusion 1.x / 2.x: `{"context": float32 (batch, length, width)}`;
            a family with pooled embeddings adds its own keys).
        """
        raise NotImplementedError

    @property
    def token_table_hash(self):
        """The sha256 of `token_embedding`'s table: which base model this is.

        Computed once per backbone (a saved folder records it in its
        `backbone.json`), and written into the embeddings and LoRAs trained
        on it, so that loading them into another base is noticed.
        """
        cached = getattr(self, "_token_table_hash", None)
        if cached is None:
            cached = self._token_table_hash = compute_token_table_hash(self)
        return cached

    def with_token_lookup(self, tokenizer, token_lookup):
        """A view that tokenizes with `tokenizer` and encodes with `token_lookup`.

        Neither this backbone nor its networks change; see `TokenLookupView`.
        """
        from studio.models.token_lookup_view import TokenLookupView

        return TokenLookupView(self, tokenizer, token_lookup)

    # --- Latent codec -----------------------------------------------------

    def encode_moments(self, pixels, training=False):
        """The VAE encoder's moments (mean, then log-variance) of pixels in [-1, 1]."""
        raise NotImplementedError

    def sample_latents(self, moments, noise=None):
        """Moments -> the denoiser's (scaled) latents; see `latent_distribution.sample_latents`.

        Args:
            moments: float `(batch, h, w, 2 * channels)`.
            noise: None (the mean), a float tensor of the latents' shape, or
                a function `shape -> tensor` (a trainer's seeded draw).

        Returns:
            float32 latents `(batch, h, w, channels)`, times `latent_scale`.
        """
        return sample_latents(moments, noise, self.latent_scale)

    def encode_images(self, pixels, noise=None, training=False):
        """Pixels in [-1, 1] `(batch, H, W, 3)` -> scaled latents (moments -> sample -> scale).

        Args:
            pixels: float `(batch, H, W, 3)` in [-1, 1] (`image_preprocessor`).
            noise: as `sample_latents`.
            training: whether the encoder runs in training mode.

        Returns:
            float32 latents `(batch, H / f, W / f, latent_channels)`.
        """
        return self.sample_latents(self.encode_moments(pixels, training=training), noise)

    def decode_latents(self, latents):
        """Scaled latents -> pixels in about [-1, 1] (`image_preprocessor.to_uint8` rounds them)."""
        raise NotImplementedError

    def latent_shape(self, height, width):
        """The latents' `(height, width, channels)` for images of `height` x `width` pixels."""
        factor = self.latent_downsampling
        return (height // factor, width // factor, self.latent_channels)

    # --- Denoiser and objective -------------------------------------------

    def denoise(self, latents, timesteps, conditioning, training=False):
        """The denoiser's prediction for noisy latents under `encode_text`'s conditioning."""
        raise NotImplementedError

    @property
    def objective(self):
        """How the denoiser was trained, as data: a dict with the objective's
        `type` and arguments (`studio.trainers.objectives.objective_for`
        builds it)."""
        raise NotImplementedError


def compute_token_table_hash(backbone):
    """`token_table_hash` of a backbone's current token table (never cached)."""
    return token_table_hash(backbone.token_embedding.embeddings.numpy())
