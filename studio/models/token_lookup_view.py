"""A backbone seen through a tokenizer with placeholder tokens and their token lookup."""


class TokenLookupView:
    """A backbone whose `encode_text` reads placeholder ids from a token lookup.

    Textual inversion (training and sampling), loaded embedding files and
    the evaluation of a trained embedding all need the same thing: a
    tokenizer that knows placeholder tokens, and text encoding that looks
    their ids up in extra vectors (the model's own table for the other
    ids). The view carries both and forwards the backbone's seam; the
    backbone and its networks are shared, never copied or changed, so
    several views (and the plain backbone) can be used side by side.

    Args:
        backbone: a `DiffusionBackbone`.
        tokenizer: the tokenizer with the placeholders (a copy of the
            backbone's, or the backbone's own when it already has them).
        token_lookup: a callable token ids -> token vectors
            (`studio.embeddings.PlaceholderEmbedding`).

    Example:

    ```python
    view = backbone.with_token_lookup(tokenizer, placeholder_embedding)
    TextToImagePipeline(view)("a photo of <cat-toy>", seed=1)
    ```
    """

    def __init__(self, backbone, tokenizer, token_lookup):
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.token_lookup = token_lookup

    def encode_text(self, token_ids, token_lookup=None, training=False):
        """`backbone.encode_text` with this view's token lookup (or the one given)."""
        if token_lookup is None:
            token_lookup = self.token_lookup
        return self.backbone.encode_text(token_ids, token_lookup=token_lookup, training=training)

    def with_token_lookup(self, tokenizer, token_lookup):
        """A view of the same backbone with another tokenizer and lookup."""
        return TokenLookupView(self.backbone, tokenizer, token_lookup)

    # The rest of the seam is the backbone's own.

    def encode_moments(self, pixels, training=False):
        return self.backbone.encode_moments(pixels, training=training)

    def sample_latents(self, moments, noise=None):
        return self.backbone.sample_latents(moments, noise)

    def encode_images(self, pixels, noise=None, training=False):
        return self.backbone.encode_images(pixels, noise, training=training)

    def decode_latents(self, latents):
        return self.backbone.decode_latents(latents)

    @property
    def vae_decoder(self):
        return self.backbone.vae_decoder

    def latent_shape(self, height, width):
        return self.backbone.latent_shape(height, width)

    def time_ids(self, *args, **kwargs):
        """The size-conditioning ids of a family that has them (SDXL)."""
        return self.backbone.time_ids(*args, **kwargs)

    def denoise(self, latents, timesteps, conditioning, training=False):
        return self.backbone.denoise(latents, timesteps, conditioning, training=training)

    @property
    def token_embedding(self):
        return self.backbone.token_embedding

    @property
    def token_table_hash(self):
        return self.backbone.token_table_hash

    @property
    def text_compute_dtype(self):
        return self.backbone.text_compute_dtype

    @property
    def denoiser(self):
        return self.backbone.denoiser

    @property
    def image_preprocessor(self):
        return self.backbone.image_preprocessor

    @property
    def objective(self):
        return self.backbone.objective

    @property
    def family(self):
        return self.backbone.family

    @property
    def name(self):
        return self.backbone.name

    @property
    def image_size(self):
        return self.backbone.image_size

    @property
    def prediction_type(self):
        return self.backbone.prediction_type

    @property
    def noise_schedule(self):
        return self.backbone.noise_schedule

    @property
    def latent_scale(self):
        return self.backbone.latent_scale

    @property
    def latent_channels(self):
        return self.backbone.latent_channels

    @property
    def latent_downsampling(self):
        return self.backbone.latent_downsampling
