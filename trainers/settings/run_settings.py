"""`RunSettings`: the settings textual inversion and DreamBooth share."""

import dataclasses

from studio.errors import SettingsError

from studio.trainers.settings.precision import PRECISIONS
from studio.trainers.settings.setting import option_name, setting
from studio.trainers.settings.training_settings import TrainingSettings
from studio.trainers.settings.weighting_scheme import DEFAULT_WEIGHTING_SCHEME, WEIGHTING_SCHEMES

# Training images are encoded by a VAE that halves them 3 times (8 pixels per
# latent); `check_resolution` also asks the model.
RESOLUTION_MULTIPLE = 8
MODEL_HELP = (
    "preset (sd-v1, sd-v2, tiny), a folder saved by the studio, a diffusers folder, or an "
    "SD 1.x / 2.x .safetensors / .ckpt file (converted on load)"
)
DEVICES_HELP = (
    "data-parallel training on this many GPUs (each takes an equal part of every batch); "
    "without GPUs the CPU is split into as many logical devices, a testing aid. A resumed "
    "run may change it"
)


@dataclasses.dataclass(kw_only=True)
class RunSettings(TrainingSettings):
    """The settings of a fine-tuning run that both methods share.

    The model, the data, the step and its schedule, the latent cache,
    sample images, checkpoints and devices. `weights`, `vocabulary` and
    `cache_dir` say where files are on this machine: `config.json` does
    not record them, and a resumed run takes them as given.
    """

    model: str | None = setting(None, MODEL_HELP, required=True)
    data: str | None = setting(None, "folder of training images", required=True)
    skip_invalid_images: bool = setting(
        False, "train on the usable images when some files of --data cannot be used "
        "(they are listed; `studio data check` shows them first)")
    steps: int = setting(2000, "optimizer steps in the run", resumable=True, at_least=1)
    # A resumed run may lower it, e.g. after a non-finite loss; `config.json`'s
    # `history` records the change.
    lr: float | None = setting(5e-3, "learning rate", resumable=True)
    warmup_steps: int = setting(0, "linear learning-rate warm-up steps")
    batch_size: int = setting(1, "images per batch, split evenly across --devices", at_least=1)
    grad_accum: int = setting(1, "batches accumulated per optimizer step", at_least=1)
    resolution: int | None = setting(None, "training image size", default_text="the model's")
    precision: str = setting("float32", "dtype policy", choices=PRECISIONS)
    seed: int = setting(0, "seed of data order, noise and tiny models' weights")
    min_snr_gamma: float | None = setting(None, "min-SNR loss weighting, e.g. 5",
                                          default_text="off")
    offset_noise: float = setting(0.0, "offset-noise strength, e.g. 0.05", default_text="off")
    weighting_scheme: str = setting(
        DEFAULT_WEIGHTING_SCHEME, "flow matching (SD3 models): how timesteps are drawn and "
        "the loss weighted, diffusers' --weighting_scheme", choices=WEIGHTING_SCHEMES)
    precondition_outputs: bool = setting(
        False, "flow matching (SD3 models): regress the clean latents through the "
        "preconditioned output, as diffusers' --precondition_outputs 1 (else the velocity)")
    latent_variants: int = setting(
        8, "augmented variants per image encoded once into the latent cache; 0 encodes "
        "every step instead", at_least=0)
    cache_dir: str | None = setting(None, "latent cache folder",
                                    default_text="~/.keras/studio-latents", recorded=False)
    sample_every: int | None = setting(None, "steps between sample images; 0: none",
                                       resumable=True, default_text="none")
    sample_prompts: list[str] | None = setting(
        None, "prompt of the sample images; repeat for several", resumable=True,
        default_text="two templates", option="--sample-prompt")
    sample_steps: int = setting(25, "sampling steps of sample images", resumable=True)
    save_every: int = setting(500, "steps between checkpoints", resumable=True, at_least=1)
    log_every: int = setting(10, "steps between TensorBoard points", resumable=True,
                             at_least=1)
    keep_checkpoints: int | None = setting(None, "newest checkpoints kept", resumable=True,
                                           default_text="all", at_least=1)
    weights: str | None = setting(None, "folder holding the preset's weight files, for "
                                  "offline use", recorded=False)
    vocabulary: str | None = setting(None, "local CLIP vocabulary file, for offline use",
                                     recorded=False)
    devices: int = setting(1, DEVICES_HELP, resumable=True, at_least=1)

    def validate(self):
        """Checks the settings (`TrainingSettings.validate`, and `resolution`); returns them.

        Raises:
            SettingsError: as `TrainingSettings.validate`, or a `resolution`
                that is not a multiple of 8.
        """
        super().validate()
        resolution = self.resolution
        if resolution is not None and (resolution <= 0 or resolution % RESOLUTION_MULTIPLE):
            raise SettingsError(
                f"--resolution must be a positive multiple of {RESOLUTION_MULTIPLE} (the VAE "
                f"turns {RESOLUTION_MULTIPLE} pixels into one latent); leave it out for the "
                f"model's own. Received: --resolution {self.resolution}"
            )
        return self

    def flow_matching_options(self):
        """The flow-matching objective's options these settings set (SD3 models)."""
        return {"weighting_scheme": self.weighting_scheme,
                "precondition_outputs": bool(self.precondition_outputs)}

    def check_ddpm_options(self):
        """Refuses the flow-matching options for a model trained with DDPM (SD 1.x/2.x, SD-XL).

        Raises:
            SettingsError: with the options given and the way out.
        """
        given = []
        if self.weighting_scheme != DEFAULT_WEIGHTING_SCHEME:
            given.append(f"--weighting-scheme {self.weighting_scheme}")
        if self.precondition_outputs:
            given.append("--precondition-outputs")
        if given:
            raise SettingsError(
                "--weighting-scheme and --precondition-outputs are flow-matching options of SD3 "
                f"models; {self.model} trains with DDPM: leave them out. Received: "
                + ", ".join(given))

    def training_resolution(self, backbone):
        """The side of the training images: `resolution`, else the model's.

        Raises:
            SettingsError: `resolution` is not a multiple of the model's
                pixels per latent.
        """
        if self.resolution is None:
            return backbone.image_size
        factor = backbone.latent_downsampling
        if self.resolution % factor:
            raise SettingsError(
                f"--resolution must be a multiple of {factor} for {self.model} ({factor} "
                f"pixels per latent). Received: --resolution {self.resolution}"
            )
        return self.resolution

    def image_folder(self, folder, resolution):
        """The `ImageFolder` of `folder` at `resolution`, skipping unusable files if asked."""
        from studio.datasets import ImageFolder

        return ImageFolder(folder, resolution=resolution, skip_invalid=self.skip_invalid_images,
                           skip_option=option_name("skip_invalid_images"))

    def check_batch_split(self, batch, source):
        """Checks that `batch` examples split evenly across `devices` (`source` names it)."""
        from studio.trainers.distributed.data_parallel_devices import DataParallelDevices

        DataParallelDevices(self.devices).split_batch(batch, source)
