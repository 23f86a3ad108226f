"""`SD3ShapesSettings`: the settings of training the shapes world's SD3-family model (`tiny-shapes-sd3`)."""

import dataclasses

from studio.trainers.settings.setting import setting
from studio.trainers.settings.training_settings import TrainingSettings


@dataclasses.dataclass(kw_only=True)
class SD3ShapesSettings(TrainingSettings):
    """The recipe of the shipped `tiny-shapes-sd3` weights: the defaults reproduce them.

    CLIP-L and CLIP-G are tiny-shapes' text encoder re-expressed and frozen;
    keras-hub's VAE trains `vae_steps` steps on the world's images, then its
    decoder alone `decoder_steps` more (the encoder, so the latents, frozen),
    its latents' shift and scale are measured, then the MMDiT trains `steps`
    steps from scratch with flow matching (logit-normal timesteps), the
    learning rates on a cosine to 10% of their peak.

    Measured (seed 0, 2 idle CPU cores): the VAE's reconstructions read as
    shape 0.99, colour / background / pattern 1.00, but those of the
    DreamBooth instance (a red striped circle, never in training) as a
    striped circle only 0.885 of the time (200 images), blurred and ringing.
    The decoder phase (5000 steps, 25-28 minutes) brings that to 0.95 and
    the instance's squared error from 525 to 186 (world: shape 1.00), and
    took pivotal-tuning DreamBooth at seed 2 from instance fidelity 0.25 to
    1.0 (see `studio.evaluation.dreambooth_evaluation`). It came after the MMDiT
    was shipped, which is why it leaves the encoder alone, as Stability's
    `sd-vae-ft-mse` fine-tuned SD's decoder for the UNets already trained
    on its latents. The 15000 MMDiT steps
    take 26 minutes (9.5 steps/s), after which the held-out prompts (225
    images, 20 steps, guidance 4) read as shape 0.996, colour 1.00,
    background 0.996 (step 7000 of the same run: shape 0.97). With SD3's 2x2
    patches (16 image tokens) the MMDiT reached shape 0.36 after 3000 steps
    and 0.60 after 12000, so it sees one latent pixel a token.
    """

    METHOD = "sd3_shapes_model"
    COMMAND = "studio train base-sd3"

    seed: int = setting(0, "seed of the world's images, the weights and the noise")
    pool_size: int = setting(8000, "rendered images the phases draw from", at_least=1)
    batch_size: int = setting(32, "images per batch", at_least=1)
    vae_steps: int = setting(1200, "steps of the VAE phase", at_least=1)
    vae_lr: float = setting(1e-3, "peak learning rate of the VAE phase")
    decoder_steps: int = setting(5000, "steps of the decoder phase (the VAE's encoder frozen)",
                                 at_least=1)
    decoder_lr: float = setting(1e-3, "peak learning rate of the decoder phase")
    steps: int = setting(15000, "steps of the MMDiT phase", at_least=1)
    lr: float = setting(1e-3, "peak learning rate of the MMDiT phase")
    warmup_steps: int = setting(200, "linear learning-rate warm-up steps of each phase")
    save_every: int = setting(500, "steps between checkpoints", at_least=1)
    log_every: int = setting(50, "steps between TensorBoard points", at_least=1)
