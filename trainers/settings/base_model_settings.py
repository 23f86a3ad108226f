"""`BaseModelSettings`: the settings of pretraining the `tiny-shapes` model from scratch."""

import dataclasses

from studio.trainers.settings.setting import setting
from studio.trainers.settings.training_settings import TrainingSettings


@dataclasses.dataclass(kw_only=True)
class BaseModelSettings(TrainingSettings):
    """The recipe of the shipped `tiny-shapes` weights: the defaults reproduce them.

    The VAE trains `vae_steps` steps, then the text encoder and UNet
    `steps` steps with min-SNR weighting (gamma 5), the learning rates on
    a cosine to 10% of their peak. On 2 idle CPU cores it took 53 minutes:
    rendering the pool 1, the VAE 12 (4.2 steps/s), the diffusion phase 40
    (4.2 steps/s); the shipped run (shapes world v4) 50 minutes, with
    other light work on the machine.
    """

    METHOD = "base_model"
    COMMAND = "studio train base"

    seed: int = setting(0, "seed of the world's images, the weights and the noise")
    pool_size: int = setting(20000, "rendered images the phases draw from", at_least=1)
    batch_size: int = setting(32, "images per batch", at_least=1)
    vae_steps: int = setting(3000, "steps of the VAE phase", at_least=1)
    vae_lr: float = setting(1e-3, "peak learning rate of the VAE phase")
    steps: int = setting(10000, "steps of the diffusion phase", at_least=1)
    lr: float = setting(1e-3, "peak learning rate of the diffusion phase")
    warmup_steps: int = setting(200, "linear learning-rate warm-up steps of each phase")
    save_every: int = setting(1000, "steps between checkpoints", at_least=1)
    log_every: int = setting(50, "steps between TensorBoard points", at_least=1)
    min_snr_gamma: float = setting(5.0, "min-SNR loss weighting of the diffusion phase; 0 "
                                   "turns it off")
