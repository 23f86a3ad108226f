"""Generates shapes-world images with a model and scores them with the shipped classifier."""

import numpy as np

from studio.datasets.shapes_world import ShapesWorld
from studio.evaluation.concept_metrics import attribute_accuracy
from studio.evaluation.concept_metrics import class_diversity
from studio.evaluation.concept_metrics import concept_fidelity
from studio.evaluation.shapes_classifier import ShapesClassifier

# Sampling settings of every score: few DDIM steps suffice on 8x8 latents.
EVALUATION_STEPS = 20
EVALUATION_GUIDANCE = 4.0
# The unnamed concept and the DreamBooth instance, as the classifier sees them.
UNNAMED_CONCEPT = {"shape": ShapesWorld.UNNAMED_SHAPE}
INSTANCE_CONCEPT = {"shape": ShapesWorld.INSTANCE["shape"], "pattern": "striped"}


class ModelEvaluator:
    """Scores a `tiny-shapes` model: prompt accuracy, concept fidelity, editability, diversity.

    Args:
        backbone: a `StableDiffusionBackbone` of the shapes world, or a view
            of one whose text encoding knows placeholder tokens (a
            textual-inversion trainer's `sampling_backbone()`).
        classifier: a `ShapesClassifier` (default: the shipped one).
        num_steps: sampling steps.
        guidance_scale: classifier-free guidance scale.
        batch_size: images per pipeline batch.

    Example:

    ```python
    evaluator = ModelEvaluator(StableDiffusionBackbone.from_preset("tiny-shapes"))
    evaluator.score_base(images_per_combination=25)  # {"shape_accuracy": ..., ...}
    ```
    """

    def __init__(self, backbone, classifier=None,
                 num_steps=EVALUATION_STEPS, guidance_scale=EVALUATION_GUIDANCE, batch_size=128):
        from studio.pipelines import TextToImagePipeline

        self.backbone = backbone
        self.classifier = classifier or ShapesClassifier.from_package()
        self.num_steps = num_steps
        self.guidance_scale = guidance_scale
        self.batch_size = batch_size
        # TensorFlow on a CPU runs the step faster as a graph than with XLA.
        self.pipeline = TextToImagePipeline(backbone, jit_compile=False)

    def generate(self, prompts, seed=0):
        """uint8 images, one per prompt; image `i` uses seed `seed + i`."""
        return self.pipeline(
            list(prompts), num_steps=self.num_steps, guidance_scale=self.guidance_scale,
            seed=seed, batch_size=self.batch_size,
        ).images

    def score_base(self, images_per_combination=25, seed=0, combinations=None):
        """Prompt accuracy on (shape, colour, background) combinations held out of training.

        Returns:
            Dict with `shape_accuracy`, `colour_accuracy`,
            `background_accuracy` and `num_images`.
        """
        combinations = combinations or ShapesWorld.held_out_combinations()
        prompts, expected = [], []
        for shape, colour, background in combinations:
            for _ in range(images_per_combination):
                prompts.append(f"a {colour} {shape} on a {background} background")
                expected.append((shape, colour, background))
        predicted = self.classifier.predict_attributes(self.generate(prompts, seed))
        scores = {
            f"{name}_accuracy": attribute_accuracy(predicted, [e[i] for e in expected], name)
            for i, name in enumerate(("shape", "colour", "background"))
        }
        scores["num_images"] = len(prompts)
        return scores

    def score_concept(self, subject, concept, num_images=40, seed=0, colours=None):
        """Concept fidelity of "a {subject}" and editability of "a {colour} {subject}".

        Args:
            subject: the words that should show the concept ("<cross>",
                "sks circle").
            concept: dict attribute -> name that the images must show.
            num_images: images per measure.
            seed: the first image's seed.
            colours: colours asked for in the editability prompts (default:
                all but the first, cycling; the instance's own red is left
                out so that a model that ignores the colour scores low).

        Returns:
            Dict with `concept_fidelity` (share of "a {subject}" images that
            show it), `editability` (share of "a {colour} {subject}" images
            in the asked colour) and `edited_fidelity` (share of those that
            also still show the concept).
        """
        fidelity = concept_fidelity(
            self.classifier.predict_attributes(
                self.generate([f"a {subject}"] * num_images, seed)
            ),
            concept,
        )
        colours = colours or [c for c in ShapesWorld.COLOURS if c != concept.get("colour", "red")]
        asked = [colours[i % len(colours)] for i in range(num_images)]
        predicted = self.classifier.predict_attributes(
            self.generate([f"a {colour} {subject}" for colour in asked], seed)
        )
        obeyed = [p == a for p, a in zip(predicted["colour"], asked)]
        shown = [
            all(predicted[name][i] == value for name, value in concept.items() if name != "colour")
            for i in range(num_images)
        ]
        return {
            "concept_fidelity": fidelity,
            "editability": float(np.mean(obeyed)),
            "edited_fidelity": float(np.mean(np.logical_and(obeyed, shown))),
        }

    def class_diversity(self, class_prompt, num_images=60, seed=1000):
        """Normalised entropy of colour and pattern over images of `class_prompt`."""
        predicted = self.classifier.predict_attributes(
            self.generate([class_prompt] * num_images, seed)
        )
        return class_diversity(predicted)
