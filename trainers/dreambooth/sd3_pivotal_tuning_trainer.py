"""Pivotal tuning on SD3 / 3.5: a new token's rows in CLIP-L and CLIP-G and an MMDiT LoRA."""

from studio.errors import InvalidInputError
from studio.models.presets import SD3
from studio.trainers.dreambooth.pivotal_token_training import (
    PivotalTokenTraining,
    check_embedding_steps,
)
from studio.trainers.dreambooth.sd3_lora_trainer import SD3LoRATrainer


class SD3PivotalTuningTrainer(PivotalTokenTraining, SD3LoRATrainer):
    """Learns a placeholder token in CLIP-L/G and an MMDiT LoRA on a subject, together.

    SD3's pivotal tuning, as diffusers' advanced DreamBooth scripts do it
    for SD-XL and Flux: the placeholder (`"<sks>"`) gets new ids in
    keras-hub's CLIP tokenizer and, in CLIP-L's and CLIP-G's tables, rows
    started from the initializer word's (`PivotalTokenTraining`, shared
    with `PivotalTuningTrainer`). For the first `embedding_steps` optimizer
    steps the rows and the LoRA train together; then the rows hold and the
    LoRA goes on. The step, the flow-matching objective and prior
    preservation are `SD3LoRATrainer`'s; the CLIP encoders' own weights
    stay frozen, so the rows are what moves the subject's conditioning
    away from the class's (the identifier's context and pooled
    projection), which the MMDiT's LoRA alone barely can.

    The results belong together: `embedding.safetensors` in the `{clip_l,
    clip_g}` layout ComfyUI's SD3 text encoders read (its metadata records
    the family, "sd3", and the token), and the LoRA in kohya's and
    diffusers' SD3 names, whose metadata names the embedding file and token.

    Args:
        backbone: a `studio.models.sd3.SD3Backbone`.
        placeholder_token: the token to learn, e.g. `"<sks>"`.
        initializer_word: the word its rows start from.
        embedding_steps: int >= 0, optimizer steps in which the rows train.
        num_vectors: rows per encoder for the token.
        **kwargs: `SD3LoRATrainer`'s other arguments, except
            `train_text_encoder`.

    Raises:
        InvalidInputError: `train_text_encoder`, a negative
            `embedding_steps`, or any of textual inversion's reasons for
            refusing a token or initializer.

    Example:

    ```python
    backbone = SD3Backbone.from_preset("tiny-shapes-sd3")
    trainer = SD3PivotalTuningTrainer(backbone, "<sks>", "circle", embedding_steps=500,
                                      lora_rank=16, lora_mlp=True)
    trainer.compile(optimizer=keras.optimizers.AdamW(2e-3))
    trainer.fit(batches, steps_per_epoch=1000)
    trainer.save_results("run/", step=1000)  # embedding + kohya and diffusers LoRA files
    ```
    """

    BASE_FAMILY = SD3

    def __init__(self, backbone, placeholder_token, initializer_word, embedding_steps,
                 num_vectors=1, train_text_encoder=False, **kwargs):
        if train_text_encoder:
            raise InvalidInputError(
                "SD3 pivotal tuning trains the token's rows and an MMDiT LoRA; CLIP-L/G "
                "stay frozen. Received: train_text_encoder=True")
        check_embedding_steps(embedding_steps)
        super().__init__(backbone, **kwargs)
        self._start_pivotal(placeholder_token, initializer_word, embedding_steps, num_vectors)

    def _encoders_by_key(self):
        return self.backbone.text_encoders

    # --- The training step ------------------------------------------------

    def _conditioning(self, inputs, training):
        # CLIP-L/G stay frozen (training=False); only the token's rows train.
        return self.backbone.encode_text(
            self._pivotal_token_ids(inputs), token_lookup=self.placeholder_embedding,
            training=False)

    # --- Results ----------------------------------------------------------

    def save_results(self, folder, step):
        """Writes `embedding.safetensors`, `lora.safetensors` and `lora.diffusers.safetensors`."""
        # The LoRA files are `SD3LoRATrainer`'s, with this `lora_weights`' metadata.
        return [self._save_embedding(folder, step), *super().save_results(folder, step)]
