"""Pivotal tuning: a new token's vectors and a UNet LoRA, trained together in one run."""

import os

from studio.errors import InvalidInputError
from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer
from studio.trainers.dreambooth.pivotal_token_training import (
    PivotalTokenTraining,
    check_embedding_steps,
)
from studio.trainers.run.run_directory import LORA_FILE


class PivotalTuningTrainer(PivotalTokenTraining, DreamBoothTrainer):
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
        check_embedding_steps(embedding_steps)
        super().__init__(backbone, lora_rank=lora_rank, **kwargs)
        self._start_pivotal(placeholder_token, initializer_word, embedding_steps, num_vectors)

    # --- The training step ------------------------------------------------

    def _conditioning(self, inputs):
        # The encoders stay frozen (training=False); only the token's rows train.
        return self.backbone.encode_text(
            self._pivotal_token_ids(inputs), token_lookup=self.placeholder_embedding,
            training=False)

    # --- Results ----------------------------------------------------------

    def save_results(self, folder, step):
        """Writes `embedding.safetensors` and `lora.safetensors` into `folder`."""
        return [self._save_embedding(folder, step),
                self.save_lora(os.path.join(folder, LORA_FILE), steps=step)]
