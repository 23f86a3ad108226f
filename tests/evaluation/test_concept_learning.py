"""Textual inversion and DreamBooth *learn* on the embedded model: scores rise, not just finite losses.

Short CPU runs on the shipped `tiny-shapes` model, scored by the shipped
classifier on freshly generated images.
"""

import keras
import numpy as np
import pytest

from studio.datasets.shapes_scene import ShapesScene
from studio.datasets.shapes_world import ShapesWorld
from studio.evaluation.model_evaluator import INSTANCE_CONCEPT, UNNAMED_CONCEPT, ModelEvaluator
from studio.models import StableDiffusionBackbone

# Large: each trains and scores for minutes on 2 CPU cores (CI runs the
# large tests after the default suite).
pytestmark = [pytest.mark.tensorflow_only, pytest.mark.large]

SCORE_IMAGES = 24
TEXTUAL_INVERSION_STEPS = 400
DREAMBOOTH_STEPS = 120


def _batches(tokenizer, prompts_and_scenes, batch_size, seed):
    world = ShapesWorld(32)
    rng = np.random.default_rng(seed)
    while True:
        picks = [prompts_and_scenes[i] for i in rng.integers(len(prompts_and_scenes), size=batch_size)]
        # Keras takes a generator's elements as (x,) tuples.
        yield ({
            "token_ids": np.asarray(tokenizer([p for p, _ in picks]), "int32"),
            "images": np.stack([world.render(s) for _, s in picks]).astype("float32") / 127.5 - 1,
        },)


def test_textual_inversion_finds_the_unnamed_concept():
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    backbone = StableDiffusionBackbone.from_preset("tiny-shapes")
    trainer = TextualInversionTrainer(backbone, "<cross>", "square", seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(2e-2))
    evaluator = ModelEvaluator(trainer.sampling_backbone())
    before = evaluator.score_concept("<cross>", UNNAMED_CONCEPT, SCORE_IMAGES)

    world, rng = ShapesWorld(32), np.random.default_rng(0)
    examples = []
    for colour in ShapesWorld.COLOURS:
        scene = world.random_scene(rng, shape="cross", colour=colour)
        examples += [(f"a {colour} <cross>", scene),
                     (f"a {colour} <cross> on a {scene.background} background", scene)]
    trainer.fit(_batches(backbone.tokenizer, examples, 5, seed=0),
                steps_per_epoch=TEXTUAL_INVERSION_STEPS, epochs=1, verbose=0)
    after = evaluator.score_concept("<cross>", UNNAMED_CONCEPT, SCORE_IMAGES)

    assert before["concept_fidelity"] <= 0.3, before
    assert after["concept_fidelity"] >= 0.7, after
    assert after["editability"] >= 0.5, after


def test_dreambooth_learns_the_instance():
    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    backbone = StableDiffusionBackbone.from_preset("tiny-shapes")
    classifier_evaluator = ModelEvaluator(backbone)
    before = classifier_evaluator.score_concept("sks circle", INSTANCE_CONCEPT, SCORE_IMAGES)

    world, rng = ShapesWorld(32), np.random.default_rng(1)
    examples = [
        ("a sks circle", ShapesScene(**{**world.random_scene(rng, **ShapesWorld.INSTANCE).__dict__,
                                        "size": "large"}))
        for _ in range(5)
    ]
    trainer = DreamBoothTrainer(backbone, prior_loss_weight=0.0, seed=0)
    trainer.compile(optimizer=keras.optimizers.AdamW(5e-4))
    trainer.fit(_batches(backbone.tokenizer, examples, 4, seed=1),
                steps_per_epoch=DREAMBOOTH_STEPS, epochs=1, verbose=0)
    after = ModelEvaluator(trainer.backbone, classifier=classifier_evaluator.classifier)
    fidelity = after.score_concept("sks circle", INSTANCE_CONCEPT, SCORE_IMAGES)

    assert before["concept_fidelity"] <= 0.2, before
    # The base model itself draws "a red striped circle" as a striped
    # circle in 67.5% of 40 images, which bounds what fine-tuning can show.
    assert fidelity["concept_fidelity"] >= 0.5, fidelity
