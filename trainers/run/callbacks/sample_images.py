"""Generates sample images every N steps, from fixed prompts and seeds."""

import os

from studio.trainers.run.callbacks.step_callback import StepCallback
from studio.trainers.run.run_directory import SAMPLE_FILE_PATTERN
from studio.trainers.run.positive_integer import check_positive_integer


class SampleImages(StepCallback):
    """Saves the images of `generate()` every `sample_every` steps, as PNGs and to TensorBoard.

    `generate` should use fixed prompts and seeds, so that the images of
    successive steps differ only by what training changed.

    Args:
        generate: callable returning a `studio.pipelines.GeneratedImages`
            (uint8 images and their generation parameters); called with the
            model's variables current.
        folder: where the PNGs go, as `step-000500-0.png`, ... (with their
            generation parameters in the PNG, as `studio generate` writes).
        sample_every: int >= 1, steps between two samplings.
        tensorboard: None or a `TrainingTensorBoard` to log the images to.
        initial_step: see `StepCallback`.
        gradient_accumulation_steps: see `StepCallback`.

    Attributes:
        last_sampled_step: the step of the last sampling, or None.
    """

    def __init__(
        self,
        generate,
        folder,
        sample_every,
        tensorboard=None,
        initial_step=0,
        gradient_accumulation_steps=1,
    ):
        super().__init__(initial_step, gradient_accumulation_steps)
        self.generate = generate
        self.folder = folder
        self.sample_every = check_positive_integer("sample_every", sample_every)
        self.tensorboard = tensorboard
        self.last_sampled_step = None

    def on_step_end(self, step, logs):
        if step % self.sample_every == 0:
            self.sample(step)

    def sample(self, step):
        """Generates and saves the samples of `step` now; returns the PNG paths."""
        from studio.images import save_png

        self.sync_model_state()
        result = self.generate()
        paths = []
        for index, (image, parameters) in enumerate(zip(result.images, result.parameters)):
            path = os.path.join(self.folder, SAMPLE_FILE_PATTERN.format(step=step, index=index))
            paths.append(save_png(image, path, parameters))
        if self.tensorboard is not None:
            self.tensorboard.images("samples", result.images, step)
        self.last_sampled_step = step
        return paths
