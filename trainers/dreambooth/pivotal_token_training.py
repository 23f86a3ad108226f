"""What pivotal tuning adds to a LoRA trainer: a new token's rows, trained for the first steps."""

import os

import numpy as np
from keras import ops

from studio.embeddings.backbone_with_embeddings import published_text_encoder_hash
from studio.embeddings.textual_inversion_embedding import (
    ARCHITECTURE_SD,
    ARCHITECTURE_SDXL,
    BASE_FAMILY_KEY,
    SDXL_ENCODERS,
    SDXL_PLACEHOLDER_KEY,
)
from studio.errors import InvalidInputError
from studio.trainers.dreambooth.pivotal_token_lookup import PivotalTokenLookup
from studio.trainers.run.gradient_accumulation import gradient_accumulation_steps
from studio.trainers.run.run_directory import EMBEDDING_FILE
from studio.trainers.textual_inversion.textual_inversion_trainer import (
    add_placeholder_tokens,
    check_fits_table,
    initial_placeholder_vectors,
)

# What the LoRA file's metadata says about the embedding that belongs with it.
METHOD = "pivotal_tuning"
EMBEDDING_FILE_KEY = "studio_embedding_file"
PLACEHOLDER_KEY = "studio_placeholder"


class PivotalTokenTraining:
    """The token half of pivotal tuning, mixed into a LoRA trainer (a `keras.Model`).

    One place for what pivotal tuning adds to a family's LoRA trainer
    (`PivotalTuningTrainer` for SD 1.x/2.x and SD-XL,
    `SD3PivotalTuningTrainer` for SD3): the placeholder's ids in the
    tokenizer, one `PivotalTokenLookup` per text encoder (rows started from
    the initializer word's), the clock that ends the rows' training after
    `embedding_steps` optimizer steps, and the results: the embedding file
    and the LoRA metadata that names it. The trainer calls
    `_start_pivotal` at the end of its `__init__`, `_step_pivotal` at the
    start of a training `call`, and encodes its prompts with
    `placeholder_embedding` as the backbone's token lookup.

    A class attribute `BASE_FAMILY` (None: the file's layout says the
    family) goes into a two-encoder embedding's metadata, as textual
    inversion's trainers do.
    """

    BASE_FAMILY = None

    def _start_pivotal(self, placeholder_token, initializer_word, embedding_steps, num_vectors):
        """Adds the placeholder to the tokenizer and builds its lookups and clock.

        The trainer checks `embedding_steps` (`check_embedding_steps`) before
        it changes the backbone, so it is not checked again here.
        """
        backbone = self.backbone
        self.placeholder_token = placeholder_token
        self.initializer_word = initializer_word
        self.num_vectors = int(num_vectors)
        self.embedding_steps = int(embedding_steps)

        token_ids, word_ids = add_placeholder_tokens(
            backbone.tokenizer, [placeholder_token], [initializer_word], [self.num_vectors])
        self.placeholder_token_ids = token_ids
        first_new_id = token_ids[placeholder_token][0]
        lookups = {}
        for key, (table, encoder) in self._token_tables().items():
            check_fits_table(backbone.tokenizer, first_new_id, table)
            lookups[key] = PivotalTokenLookup(
                table, first_new_id,
                initial_placeholder_vectors(table, word_ids, [self.num_vectors]),
                output_dtype=encoder.compute_dtype,
                name=f"pivotal_lookup_{key}" if key else "pivotal_lookup",
            )
        # Two-encoder seams take one lookup per encoder, SD's one lookup.
        self.placeholder_embedding = lookups if self.has_two_encoders else lookups[None]
        # Training calls so far (several per optimizer step with gradient
        # accumulation), the clock of the embedding's phase.
        self.training_calls = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False,
            name="training_calls", aggregation="only_first_replica")

    @property
    def has_two_encoders(self):
        """True for SD-XL and SD3 (CLIP-L and CLIP-G), false for SD 1.x/2.x."""
        return getattr(self.backbone, "token_embeddings", None) is not None

    def _token_tables(self):
        """`{key: (token table, its encoder)}`: "clip_l" and "clip_g", or SD's None."""
        if self.has_two_encoders:
            tables = self.backbone.token_embeddings
            encoders = self._encoders_by_key()
            return {key: (tables[key], encoders[key]) for key in SDXL_ENCODERS}
        return {None: (self.backbone.token_embedding, self.backbone.text_encoder)}

    def _encoders_by_key(self):
        """`{"clip_l": encoder, "clip_g": encoder}` of a two-encoder backbone."""
        return dict(zip(SDXL_ENCODERS, (self.backbone.text_encoder, self.backbone.text_encoder_2)))

    def _lookups(self):
        if self.has_two_encoders:
            return [self.placeholder_embedding[key] for key in SDXL_ENCODERS]
        return [self.placeholder_embedding]

    @property
    def training_state_extras(self):
        """What checkpoints keep beside the trainable state: the held rows and the clock."""
        return [v for lookup in self._lookups() for v in lookup.state_variables] + [
            self.training_calls]

    def call(self, inputs, training=False):
        if training:
            self._step_pivotal()
        return super().call(inputs, training=training)

    def _step_pivotal(self):
        """Starts a training call: the rows train while the clock is within their phase."""
        calls = ops.convert_to_tensor(self.training_calls)
        trains_now = ops.less(
            calls, float(self.embedding_steps * gradient_accumulation_steps(self.optimizer)))
        for lookup in self._lookups():
            lookup.step(trains_now)
        self.training_calls.assign(calls + 1.0)

    def _pivotal_token_ids(self, inputs):
        if "token_ids" not in inputs:
            raise ValueError(
                "Pivotal tuning encodes its prompts every step (the token's rows train): "
                f"a batch must hold 'token_ids'. Received: keys {sorted(inputs)}")
        return inputs["token_ids"]

    # --- Results ----------------------------------------------------------

    def learned_vectors(self):
        """The token's rows as generation reads them: `{"clip_l", "clip_g"}` or `{token}`."""
        vectors = {
            key: ops.convert_to_numpy(lookup.current_vectors()).astype("float32")
            for key, lookup in zip(self._token_tables(), self._lookups())
        }
        return vectors if self.has_two_encoders else {self.placeholder_token: vectors[None]}

    def embedding(self, steps=None):
        """The learned rows as a `studio.embeddings.TextualInversionEmbedding`."""
        from studio.embeddings import TextualInversionEmbedding

        two = self.has_two_encoders
        metadata = None
        if two:
            metadata = {SDXL_PLACEHOLDER_KEY: self.placeholder_token,
                        **({BASE_FAMILY_KEY: self.BASE_FAMILY} if self.BASE_FAMILY else {})}
        return TextualInversionEmbedding(
            self.learned_vectors(),
            base_model=self.backbone.name,
            base_model_hash="" if two else published_text_encoder_hash(self.backbone.name),
            token_table_hash=self.backbone.token_table_hash,
            initializer=self.initializer_word,
            steps=steps,
            architecture=ARCHITECTURE_SDXL if two else ARCHITECTURE_SD,
            metadata=metadata,
        )

    def lora_weights(self, steps=None):
        """The trainer's LoRA matrices, their metadata naming the embedding file and token."""
        weights = super().lora_weights(steps)
        weights.metadata.update({
            "studio_method": METHOD,
            EMBEDDING_FILE_KEY: EMBEDDING_FILE,
            PLACEHOLDER_KEY: self.placeholder_token,
        })
        return weights

    def _save_embedding(self, folder, step):
        from studio.embeddings import save_embedding

        return save_embedding(self.embedding(step), os.path.join(folder, EMBEDDING_FILE),
                              format="native")

    def sampling_backbone(self):
        """A view of the backbone (LoRA applied in place) that reads the token's rows."""
        return self.backbone.with_token_lookup(self.backbone.tokenizer, self.placeholder_embedding)

    def get_config(self):
        return dict(super().get_config(),
                    placeholder_token=self.placeholder_token,
                    initializer_word=self.initializer_word,
                    num_vectors=self.num_vectors,
                    embedding_steps=self.embedding_steps)


def check_embedding_steps(embedding_steps):
    """Raises `InvalidInputError` unless `embedding_steps` is an integer >= 0."""
    if isinstance(embedding_steps, bool) or not isinstance(
            embedding_steps, (int, np.integer)) or embedding_steps < 0:
        raise InvalidInputError(
            "`embedding_steps` must be an integer >= 0. "
            f"Received: embedding_steps={embedding_steps!r}")
