"""Pivotal tuning: a new token's vectors and a UNet LoRA, trained together in one run."""

import os

import numpy as np
from keras import ops

from studio.embeddings.backbone_with_embeddings import published_text_encoder_hash
from studio.embeddings.textual_inversion_embedding import (
    ARCHITECTURE_SD,
    ARCHITECTURE_SDXL,
    SDXL_ENCODERS,
    SDXL_PLACEHOLDER_KEY,
)
from studio.errors import InvalidInputError
from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer
from studio.trainers.dreambooth.pivotal_token_lookup import PivotalTokenLookup
from studio.trainers.run.gradient_accumulation import gradient_accumulation_steps
from studio.trainers.run.run_directory import EMBEDDING_FILE, LORA_FILE
from studio.trainers.textual_inversion.textual_inversion_trainer import (
    add_placeholder_tokens,
    check_fits_table,
    initial_placeholder_vectors,
)

# What the LoRA file's metadata says about the embedding that belongs with it.
METHOD = "pivotal_tuning"
EMBEDDING_FILE_KEY = "studio_embedding_file"
PLACEHOLDER_KEY = "studio_placeholder"


class PivotalTuningTrainer(DreamBoothTrainer):
    """Learns a placeholder token and a UNet LoRA on a subject, as diffusers' advanced SDXL script.

    The placeholder (`"<cross>"`) gets `num_vectors` new ids in the
    tokenizer and, in each text encoder's table (SD-XL: both), rows
    started from the initializer word's, as textual inversion does. The
    UNet gets LoRA as in `DreamBoothTrainer`'s LoRA mode. For the first
    `embedding_steps` optimizer steps both train; then the rows hold their
    value (`PivotalTokenLookup`) while the LoRA goes on. Batches carry
    `"token_ids"` (the instance prompt uses the token: "a photo of
    <cross>"); prior preservation, the loss and the step are
    `DreamBoothTrainer`'s. The text encoders themselves stay frozen.

    The results are the two files that belong together: the embedding
    (`{clip_l, clip_g}` for SD-XL, `{token: vectors}` for SD 1.x/2.x) and
    the LoRA, whose metadata names the embedding file and the token.

    Args:
        backbone: a `StableDiffusionBackbone` or `SDXLBackbone`.
        placeholder_token: the token to learn, e.g. `"<cross>"`.
        initializer_word: the word its rows start from.
        embedding_steps: int >= 0, optimizer steps in which the rows train.
        lora_rank: int >= 1.
        num_vectors: rows per encoder for the token.
        **kwargs: `DreamBoothTrainer`'s other arguments, except
            `train_text_encoder`.

    Raises:
        InvalidInputError: no `lora_rank`, `train_text_encoder`, a negative
            `embedding_steps`, or any of textual inversion's reasons for
            refusing a token or initializer.

    Example:

    ```python
    backbone = SDXLBackbone.from_preset("tiny-sdxl")
    trainer = PivotalTuningTrainer(backbone, "<cross>", "square", embedding_steps=50,
                                   lora_rank=4, prior_loss_weight=0.0)
    trainer.compile(optimizer=keras.optimizers.AdamW(1e-3))
    trainer.fit(batches, steps_per_epoch=100)
    trainer.save_results("run/", step=100)  # embedding.safetensors + lora.safetensors
    ```
    """

    def __init__(self, backbone, placeholder_token, initializer_word, embedding_steps,
                 lora_rank=4, num_vectors=1, train_text_encoder=False, **kwargs):
        if lora_rank is None or train_text_encoder:
            raise InvalidInputError(
                "Pivotal tuning trains the token's rows and a UNet LoRA; it needs a "
                "lora_rank and a frozen text encoder. Received: "
                f"lora_rank={lora_rank!r}, train_text_encoder={train_text_encoder!r}")
        if isinstance(embedding_steps, bool) or not isinstance(
                embedding_steps, (int, np.integer)) or embedding_steps < 0:
            raise InvalidInputError(
                "`embedding_steps` must be an integer >= 0. "
                f"Received: embedding_steps={embedding_steps!r}")
        super().__init__(backbone, lora_rank=lora_rank, **kwargs)
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
        # SD-XL's seam takes one lookup per encoder, SD's one lookup.
        self.placeholder_embedding = lookups if self.is_sdxl else lookups[None]
        # Training calls so far (several per optimizer step with gradient
        # accumulation), the clock of the embedding's phase.
        self.training_calls = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False,
            name="training_calls", aggregation="only_first_replica")

    @property
    def is_sdxl(self):
        return getattr(self.backbone, "text_encoder_2", None) is not None

    def _token_tables(self):
        """`{key: (token table, its encoder)}`: SD-XL's "clip_l" and "clip_g", SD's None."""
        if self.is_sdxl:
            tables = self.backbone.token_embeddings
            encoders = (self.backbone.text_encoder, self.backbone.text_encoder_2)
            return {key: (tables[key], encoder) for key, encoder in zip(SDXL_ENCODERS, encoders)}
        return {None: (self.backbone.token_embedding, self.text_encoder)}

    def _lookups(self):
        if self.is_sdxl:
            return [self.placeholder_embedding[key] for key in SDXL_ENCODERS]
        return [self.placeholder_embedding]

    @property
    def training_state_extras(self):
        """What checkpoints keep beside the trainable state: the held rows and the clock."""
        return [v for lookup in self._lookups() for v in lookup.state_variables] + [
            self.training_calls]

    # --- The training step ------------------------------------------------

    def call(self, inputs, training=False):
        if training:
            calls = ops.convert_to_tensor(self.training_calls)
            trains_now = ops.less(
                calls, float(self.embedding_steps * gradient_accumulation_steps(self.optimizer)))
            for lookup in self._lookups():
                lookup.step(trains_now)
            self.training_calls.assign(calls + 1.0)
        return super().call(inputs, training=training)

    def _conditioning(self, inputs):
        if "token_ids" not in inputs:
            raise ValueError(
                "Pivotal tuning encodes its prompts every step (the token's rows train): "
                f"a batch must hold 'token_ids'. Received: keys {sorted(inputs)}")
        # The encoders stay frozen (training=False); only the token's rows train.
        return self.backbone.encode_text(
            inputs["token_ids"], token_lookup=self.placeholder_embedding, training=False)

    # --- Results ----------------------------------------------------------

    def learned_vectors(self):
        """The token's rows as generation reads them: `{"clip_l", "clip_g"}` or `{token}`."""
        vectors = {
            key: ops.convert_to_numpy(lookup.current_vectors()).astype("float32")
            for key, lookup in zip(self._token_tables(), self._lookups())
        }
        return vectors if self.is_sdxl else {self.placeholder_token: vectors[None]}

    def embedding(self, steps=None):
        """The learned rows as a `studio.embeddings.TextualInversionEmbedding`."""
        from studio.embeddings import TextualInversionEmbedding

        sdxl = self.is_sdxl
        return TextualInversionEmbedding(
            self.learned_vectors(),
            base_model=self.backbone.name,
            base_model_hash="" if sdxl else published_text_encoder_hash(self.backbone.name),
            token_table_hash=self.backbone.token_table_hash,
            initializer=self.initializer_word,
            steps=steps,
            architecture=ARCHITECTURE_SDXL if sdxl else ARCHITECTURE_SD,
            metadata={SDXL_PLACEHOLDER_KEY: self.placeholder_token} if sdxl else None,
        )

    def lora_weights(self, steps=None):
        """The LoRA matrices, their metadata naming the embedding file and token."""
        weights = super().lora_weights(steps)
        weights.metadata.update({
            "studio_method": METHOD,
            EMBEDDING_FILE_KEY: EMBEDDING_FILE,
            PLACEHOLDER_KEY: self.placeholder_token,
        })
        return weights

    def save_results(self, folder, step):
        """Writes `embedding.safetensors` and `lora.safetensors` into `folder`."""
        from studio.embeddings import save_embedding

        embedding = save_embedding(self.embedding(step), os.path.join(folder, EMBEDDING_FILE),
                                   format="native")
        return [embedding, self.save_lora(os.path.join(folder, LORA_FILE), steps=step)]

    def sampling_backbone(self):
        """A view of the backbone (LoRA applied in place) that reads the token's rows."""
        return self.backbone.with_token_lookup(self.backbone.tokenizer, self.placeholder_embedding)

    def get_config(self):
        return dict(
            super().get_config(),
            placeholder_token=self.placeholder_token,
            initializer_word=self.initializer_word,
            num_vectors=self.num_vectors,
            embedding_steps=self.embedding_steps,
        )
