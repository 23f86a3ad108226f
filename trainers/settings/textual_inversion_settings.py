"""`TextualInversionSettings`: the settings of a textual-inversion run."""

import dataclasses

from studio.trainers.settings.precision import PRECISIONS
from studio.trainers.settings.run_settings import RunSettings
from studio.trainers.settings.setting import setting

PROPERTIES = ("object", "style")


@dataclasses.dataclass(kw_only=True)
class TextualInversionSettings(RunSettings):
    """Learn token vectors for a placeholder such as <cat-toy>, the model frozen.

    Example:

    >>> settings = TextualInversionSettings(
    ...     model="tiny-shapes", data="images/", token="<cross>", init_word="square")
    >>> train_textual_inversion(settings, "runs/cross")
    """

    METHOD = "textual_inversion"
    COMMAND = "studio train textual-inversion"

    data: str | None = setting(
        None, "folder of training images (caption .txt files optional)", required=True)
    token: str | None = setting(None, 'the placeholder to learn, e.g. "<cat-toy>"',
                                required=True)
    init_word: str | None = setting(None, "word or phrase the vectors start from, e.g. toy",
                                    required=True)
    num_vectors: int = setting(1, "vectors for the token", at_least=1)
    property: str = setting("object", "prompt templates", choices=PROPERTIES)
    norm_regularization: float = setting(
        0.0, "weight pulling vector norms to the initializer's", default_text="off")
    precision: str = setting("float32", "dtype policy; the frozen networks are stored in "
                             "its compute dtype", choices=PRECISIONS)
    jit: bool = setting(
        True, "never compile the step with XLA/jit", recorded=False,
        default_text="XLA on GPUs and under JAX; TensorFlow on a CPU runs a graph without "
        "XLA, which is faster there")

    def validate(self):
        """Checks the settings (`TrainingSettings.validate`, and the batch's split).

        Returns:
            The settings.
        """
        super().validate()
        self.check_batch_split(self.batch_size, f"--batch-size {self.batch_size}")
        return self

    def sample_prompt_list(self):
        """The sample images' prompts: `sample_prompts`, else two of the property's templates."""
        if self.sample_prompts:
            return list(self.sample_prompts)
        from studio.prompts import PromptTemplates

        return PromptTemplates.get(self.property).fill(self.token)[:2]
