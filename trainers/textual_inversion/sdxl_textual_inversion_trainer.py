"""Textual inversion on SDXL: one placeholder's vectors in both text encoders, trained together."""

import numpy as np
from keras import ops

from studio.embeddings.placeholder_embedding import PlaceholderEmbedding
from studio.embeddings.textual_inversion_embedding import (
    ARCHITECTURE_SDXL,
    BASE_FAMILY_KEY,
    SDXL_ENCODERS,
    SDXL_PLACEHOLDER_KEY,
)
from studio.errors import InvalidInputError
from studio.trainers.textual_inversion.textual_inversion_trainer import (
    TextualInversionTrainer,
    check_fits_table,
    initial_placeholder_vectors,
)


class SDXLTextualInversionTrainer(TextualInversionTrainer):
    """Trains one placeholder's vectors in both of an `SDXLBackbone`'s text encoders.

    SDXL's two tokenizers share one vocabulary, so the placeholder gets its
    ids once, in `backbone.tokenizer`; each encoder gets its own rows for
    them (`PlaceholderEmbedding` on its own table, 768 and 1280 wide for
    SDXL base), started from the initializer word's vectors in that
    encoder's table. Both rows train at once, through the backbone's seam:
    `encode_text` with the token lookup `{"clip_l": ..., "clip_g": ...}`
    gives the UNet its context, pooled text embedding and size ids (for the
    training images' size). Everything else is `TextualInversionTrainer`'s:
    the step, the objective, loss scaling, checkpoints, samples.

    The result is one embedding in the `{"clip_l": (n, 768), "clip_g":
    (n, 1280)}` layout that kohya, AUTOMATIC1111/Forge, ComfyUI and
    diffusers read (`embedding()`, `save_embedding`).

    Args:
        backbone: a `studio.models.SDXLBackbone`.
        placeholder_tokens: one placeholder (str, or a list of one): an
            SDXL embedding file holds one token.
        initializer_words, num_vectors, min_snr_gamma, offset_noise,
        norm_regularization, seed, **kwargs: as `TextualInversionTrainer`'s;
            the norm penalty is the mean over both encoders' vectors.

    Raises:
        InvalidInputError: several placeholders, or any of
            `TextualInversionTrainer`'s reasons.
    """

    # How error messages name the model family.
    FAMILY_NAME = "SD-XL"
    # The family the embedding files record (`BASE_FAMILY_KEY`); None: SD-XL.
    BASE_FAMILY = None

    def __init__(self, backbone, placeholder_tokens, initializer_words, **kwargs):
        tokens = [placeholder_tokens] if isinstance(placeholder_tokens, str) else list(
            placeholder_tokens
        )
        if len(tokens) != 1:
            raise InvalidInputError(
                f"{self.FAMILY_NAME} textual inversion learns one placeholder per run (its "
                f"embedding file holds one token). Received: placeholder_tokens={tokens}"
            )
        super().__init__(backbone, tokens, initializer_words, **kwargs)

    def _placeholder_lookup(self, backbone, first_new_id, word_ids, counts):
        """`{"clip_l": lookup, "clip_g": lookup}` and both encoders' initial norms, joined."""
        tables = backbone.token_embeddings
        encoders = self._text_encoders(backbone)
        lookups, norms = {}, []
        for key in SDXL_ENCODERS:
            check_fits_table(backbone.tokenizer, first_new_id, tables[key])
            initial = initial_placeholder_vectors(tables[key], word_ids, counts)
            lookups[key] = PlaceholderEmbedding(
                tables[key],
                first_new_id,
                initial,
                output_dtype=encoders[key].compute_dtype,
                name=f"placeholder_embedding_{key}",
            )
            norms.append(np.linalg.norm(initial, axis=-1))
        return lookups, np.concatenate(norms).astype("float32")

    def _text_encoders(self, backbone):
        """The text encoders by embedding-file key; each lookup returns its compute dtype."""
        return dict(zip(SDXL_ENCODERS, (backbone.text_encoder, backbone.text_encoder_2)))

    # --- The training step ------------------------------------------------

    @property
    def new_vectors(self):
        """The trainable variables, `{"clip_l": (n, 768), "clip_g": (n, 1280)}` for SDXL base."""
        return {key: lookup.new_vectors for key, lookup in self.placeholder_embedding.items()}

    def norm_penalty(self):
        """Mean squared difference between all vectors' norms and their initial norms."""
        norms = [
            ops.sqrt(ops.sum(ops.square(self.new_vectors[key]), axis=-1)) for key in SDXL_ENCODERS
        ]
        norms = ops.concatenate(norms, axis=0)
        return ops.mean(ops.square(norms - ops.convert_to_tensor(self.initial_norms)))

    # --- Results ----------------------------------------------------------

    @property
    def placeholder_token(self):
        return self.placeholder_tokens[0]

    def learned_vectors(self):
        """Dict "clip_l" / "clip_g" -> float32 numpy array `(num_vectors, width)`."""
        return {
            key: ops.convert_to_numpy(variable).astype("float32")
            for key, variable in self.new_vectors.items()
        }

    def vector_norms(self):
        """Dict "clip_l/<token>" or "clip_l/<token>_i" (and clip_g) -> L2 norm of that vector."""
        norms = {}
        for key, vectors in self.learned_vectors().items():
            for index, vector in enumerate(vectors):
                suffix = "" if index == 0 else f"_{index}"
                norms[f"{key}/{self.placeholder_token}{suffix}"] = float(
                    np.linalg.norm(np.asarray(vector, np.float64))
                )
        return norms

    def embedding(self, steps=None):
        """The learned vectors as an SD-XL `TextualInversionEmbedding` naming its token."""
        from studio.embeddings import TextualInversionEmbedding

        return TextualInversionEmbedding(
            self.learned_vectors(),
            base_model=self.backbone.name,
            token_table_hash=self.backbone.token_table_hash,
            initializer=", ".join(self.initializer_words),
            steps=steps,
            architecture=ARCHITECTURE_SDXL,
            metadata={
                SDXL_PLACEHOLDER_KEY: self.placeholder_token,
                **({BASE_FAMILY_KEY: self.BASE_FAMILY} if self.BASE_FAMILY else {}),
            },
        )
