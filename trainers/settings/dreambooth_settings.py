"""`DreamBoothSettings`: the settings of a DreamBooth run (full or LoRA)."""

import dataclasses

from studio.errors import SettingsError
from studio.trainers.settings.precision import PRECISIONS
from studio.trainers.settings.run_settings import RunSettings
from studio.trainers.settings.setting import setting

OPTIMIZERS = ("adamw", "adam", "adafactor", "lion", "sgd")
LR_DECAYS = ("constant", "cosine")
# Learning rates that work for SD 1.x subjects (diffusers' examples): full
# fine-tuning moves every weight and needs a far smaller rate than LoRA.
DEFAULT_FULL_LR = 5e-6
DEFAULT_LORA_LR = 1e-4
# Where class images go when `class_data` is not given, in the run folder.
CLASS_IMAGES_FOLDER = "class_images"


@dataclasses.dataclass(kw_only=True)
class DreamBoothSettings(RunSettings):
    """Fine-tune the model on photos of a subject bound to a rare word ("a photo of sks dog").

    With `class_prompt`, class images keep the class's meaning (prior
    preservation). `lora_rank` trains LoRA matrices only; otherwise the
    UNet is fine-tuned. `lr` left at None becomes `DEFAULT_LORA_LR` or
    `DEFAULT_FULL_LR`. With `token` (LoRA mode), pivotal tuning: the new
    token's vectors train with the LoRA for the first `ti_fraction` of the
    steps, and the run writes the embedding beside the LoRA.
    """

    METHOD = "dreambooth"
    COMMAND = "studio train dreambooth"

    data: str | None = setting(None, "folder of the subject's photos", required=True)
    instance_prompt: str | None = setting(
        None, 'prompt of the subject\'s photos, e.g. "a photo of sks dog"', required=True)
    class_prompt: str | None = setting(
        None, 'prompt of the class images, e.g. "a photo of a dog"; turns on prior preservation')
    class_data: str | None = setting(None, "folder of class images, topped up by generation",
                                     default_text=f"RUN/{CLASS_IMAGES_FOLDER}")
    num_class_images: int = setting(100, "class images wanted", at_least=1)
    class_image_steps: int = setting(25, "sampling steps per class image", at_least=1)
    class_image_guidance: float = setting(
        7.5, "guidance scale of the class images: the scale you will sample the fine-tuned "
        "model with, since the prior loss pulls it toward these images", at_least=0)
    prior_loss_weight: float = setting(1.0, "weight of the class images' loss")
    lora_rank: int | None = setting(None, "train LoRA matrices of this rank only", at_least=1,
                                    default_text="full UNet")
    lora_alpha: float | None = setting(None, "LoRA alpha; outputs scale by alpha/rank",
                                       default_text="rank")
    lora_feed_forward: bool = setting(False, "LoRA also on the feed-forward projections")
    train_text_encoder: bool = setting(False, "also train the text encoder (LoRA in LoRA mode)")
    token: str | None = setting(
        None, 'pivotal tuning: also learn this new token (e.g. "<cross>"; use it in '
        "--instance-prompt) for the first --ti-fraction of the steps (LoRA mode)",
        default_text="none")
    init_word: str | None = setting(None, "word the token's vectors start from (with --token)")
    ti_fraction: float = setting(
        0.5, "fraction of the steps in which the token's vectors train (with --token)")
    optimizer: str = setting(
        "adamw", "optimizer; adafactor needs less memory (its rate is relative to each "
        "weight's size)", choices=OPTIMIZERS)
    steps: int = setting(400, "optimizer steps in the run", resumable=True, at_least=1)
    lr: float | None = setting(None, "learning rate", resumable=True,
                               default_text=f"{DEFAULT_FULL_LR} full, {DEFAULT_LORA_LR} LoRA")
    lr_decay: str = setting("constant", "after warm-up", choices=LR_DECAYS)
    batch_size: int = setting(
        1, "subject images per batch; as many class images join them; the whole batch is "
        "split evenly across --devices", at_least=1)
    precision: str = setting(
        "float32", "dtype policy; trained weights stay float32, LoRA runs store the frozen "
        "networks in its compute dtype", choices=PRECISIONS)
    remat: bool = setting(
        False, "recompute the denoiser's blocks' activations in the backward pass (UNet "
        "blocks, SD3's joint blocks): less memory, more compute")
    seed: int = setting(0, "seed of data order, noise and LoRA init")
    sample_every: int | None = setting(None, "steps between validation images", resumable=True,
                                       default_text="none")
    sample_prompts: list[str] | None = setting(
        None, "prompt of the validation images; repeat for several", resumable=True,
        default_text="the instance and class prompts", option="--sample-prompt")
    sample_steps: int = setting(25, "sampling steps of validation images", resumable=True)

    def __post_init__(self):
        if self.lr is None:
            self.lr = DEFAULT_LORA_LR if self.lora_rank else DEFAULT_FULL_LR

    @property
    def is_lora(self):
        return self.lora_rank is not None

    def validate(self):
        """Checks the settings (`TrainingSettings.validate`, and how they combine); returns them.

        Raises:
            SettingsError: LoRA options without `lora_rank`, `class_data`
                without `class_prompt`, or a batch that does not split
                evenly across the devices.
        """
        super().validate()
        if self.lora_rank is None and (self.lora_alpha is not None or self.lora_feed_forward):
            raise SettingsError(
                "--lora-alpha and --lora-feed-forward need --lora-rank. Received: no --lora-rank"
            )
        self._check_pivotal()
        if self.class_data and not self.class_prompt:
            raise SettingsError(
                "--class-data needs --class-prompt, the prompt of the class images. "
                f"Received: --class-data {self.class_data} without --class-prompt"
            )
        batch, source = self.batch_size, f"--batch-size {self.batch_size}"
        if self.class_prompt:
            # Prior preservation: as many class images join the subject's.
            batch, source = 2 * batch, source + " subject images and as many class images"
        self.check_batch_split(batch, source)
        return self

    @property
    def is_pivotal(self):
        """True for pivotal tuning: a new token trained with the LoRA."""
        return self.token is not None

    def embedding_steps(self):
        """The optimizer steps in which the token's vectors train (`ti_fraction` of `steps`).

        A resumed run with more `steps` moves this on only if the vectors
        still train: once held, they stay held.
        """
        return int(round(self.ti_fraction * self.steps))

    def _check_pivotal(self):
        if self.token is None:
            if self.init_word is not None:
                raise SettingsError(
                    "--init-word is the start of --token's vectors (pivotal tuning): add "
                    f"--token. Received: --init-word {self.init_word} without --token")
            return
        if self.lora_rank is None or self.train_text_encoder:
            raise SettingsError(
                "Pivotal tuning (--token) trains the token's vectors and a UNet LoRA: add "
                "--lora-rank (e.g. 4) and leave out --train-text-encoder. Received: --token "
                f"{self.token}"
                + (" without --lora-rank" if self.lora_rank is None else "")
                + (" with --train-text-encoder" if self.train_text_encoder else ""))
        if not self.init_word:
            raise SettingsError(
                "--token needs --init-word, the word its vectors start from (e.g. the "
                f"class word). Received: --token {self.token} without --init-word")
        if not 0.0 <= self.ti_fraction <= 1.0:
            raise SettingsError(
                "--ti-fraction must be between 0 and 1 (0.5: the token trains for half the "
                f"steps). Received: --ti-fraction {self.ti_fraction}")
        if self.token not in self.instance_prompt:
            raise SettingsError(
                f"--instance-prompt must use the token it teaches, e.g. \"a photo of "
                f"{self.token}\". Received: --token {self.token}, --instance-prompt "
                f"{self.instance_prompt!r}")

    def sample_prompt_list(self):
        """The validation images' prompts: `sample_prompts`, else the instance and class prompts."""
        if self.sample_prompts:
            return list(self.sample_prompts)
        return [p for p in (self.instance_prompt, self.class_prompt) if p]
