"""DreamBooth on the shapes world's instance, scored: instance fidelity and class diversity."""

import os

from studio.datasets.shapes_scene import ShapesScene
from studio.datasets.shapes_world import ShapesWorld
from studio.evaluation.model_evaluator import EVALUATION_GUIDANCE, INSTANCE_CONCEPT, ModelEvaluator
from studio.models.presets import SD3

INSTANCE_SUBJECT = "sks circle"
CLASS_PROMPT = "a circle"
INSTANCE_IMAGES = 5
# LoRA rank 16 on the UNet's and the text encoder's attention, 600 steps.
# The world's "sks" was never in a caption, so its vector is an untrained
# one: with the text encoder frozen, "a sks circle" reads almost as "a
# circle", and the prior loss wins (UNet-only LoRA, rank 8: instance
# fidelity 0.075). With the text encoder, seeds 0 and 1 scored 0.85 and 1.0
# with prior preservation (class diversity 1.05x and 1.13x the base
# model's), 0.35 and 0.825 without it (0.83x and 0.37x). Rank 8 at 400
# steps scored 0.80-0.875 with the prior, but kept the class's diversity
# without it too (0.95x), so it could not show what the prior loss does.
DREAMBOOTH_SETTINGS = {
    "lora_rank": 16,
    "train_text_encoder": True,
    "steps": 600,
    "lr": 2e-3,
    "batch_size": 4,
    "num_class_images": 50,
    "class_image_steps": 20,
    # The scale the scores sample with: class images made at the pipeline's
    # default 7.5 are a narrower set (colour-and-pattern diversity 0.44
    # against 0.61 at 4.0), and the prior loss pulls the model toward them.
    "class_image_guidance": EVALUATION_GUIDANCE,
    # 0: encode every step (the latent cache assumes SD's 8x VAE; this one is 4x).
    "latent_variants": 0,
    "save_every": 100,
    "log_every": 10,
}

# What the SD3 family's shapes model (`tiny-shapes-sd3`) trains with instead:
# pivotal tuning, a new token "<sks>" (rows in CLIP-L/G started from
# "circle", trained for the first half of the steps) with LoRA on the
# MMDiT's attention and MLPs, 1000 steps, class images at guidance 1 (a
# wider class set: class diversity 1.21x the base model's against 0.74x at
# guidance 4). Its MMDiT draws a striped circle (never in its base
# training) as a striped square 29 times in 40, and LoRA alone, even with
# CLIP-L/G LoRA (`train_text_encoder`), learned it at some seeds only
# (0.90 / 0.725 / 0.25 at seeds 0 / 1 / 2): the identifier "sks" read
# almost as "a circle".
# Measured with the shipped VAE, whose decoder `studio train base-sd3`'s
# decoder phase trained on (2026-12-05): seeds 0-4 score instance fidelity
# 1.0 each (base 0.025), class diversity 1.00, 0.90, 0.96, 0.97, 0.80x the
# base model's (1500 steps: 1.0 each too, 0.80-1.15x). Before that phase
# the VAE blurred the instance (its reconstructions read as a striped
# circle 0.885 of the time, 0.95 after), the tuned model drew "a <sks>
# circle" as nearly one blurred blob for every noise seed, and that blob's
# reading (round or square) decided the score: seeds 0-4 scored 0.825,
# 0.825, 0.25, 1.0, 1.0, and seed 2 stayed at 0.125-0.70 whatever else
# changed (500-2000 steps, LoRA rank 4-64, prior weight 0.5, batch 8, 10
# instance or 200 class images, weight EMA, LoRA on the adaLN modulations,
# other learning rates, loss weighting schemes, preconditioned outputs,
# class images at guidance 4), its checkpoints reading 0.85 to 0.25. A
# decoder trained 2000 steps at half the learning rate (reconstructions
# 0.94) lifted seed 2 to 0.50.
FAMILY_DREAMBOOTH_SETTINGS = {
    SD3: {"steps": 1000, "lora_feed_forward": True, "class_image_guidance": 1.0,
          "train_text_encoder": False, "token": "<sks>", "init_word": "circle"},
}


def render_instance_set(folder, count=INSTANCE_IMAGES, seed=0):
    """Writes `count` images of the instance (the red-and-cyan striped circle) into `folder`."""
    import numpy as np
    from PIL import Image

    world = ShapesWorld(32)
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for index in range(count):
        scene = world.random_scene(rng, **ShapesWorld.INSTANCE)
        scene = ShapesScene(**{**scene.__dict__, "size": "large"})
        Image.fromarray(world.render(scene)).save(os.path.join(folder, f"instance_{index}.png"))
    return folder


def evaluate_dreambooth(out, prior_preservation=True, steps=None, seed=0, model="tiny-shapes",
                        num_images=40, settings=None):
    """Fine-tunes `model` on the instance and scores it against the model before.

    `settings` (a dict) replaces entries of `DREAMBOOTH_SETTINGS` and of
    the model family's `FAMILY_DREAMBOOTH_SETTINGS`: e.g.
    `{"train_text_encoder": False}` for denoiser-only LoRA. With a
    `token` (pivotal tuning, SD3's default) the run learns "a <sks>
    circle" and is scored on it; `{"token": None, "init_word": None,
    "train_text_encoder": True}` turns SD3's back into plain LoRA.

    Returns:
        Dict with `instance_fidelity` and `base_instance_fidelity` (share of
        the instance prompt's images that show the striped circle, after;
        of "a sks circle" images, before), `editability`, `class_diversity` and
        `base_class_diversity` (normalised colour-and-pattern entropy of
        "a circle" images after and before), `diversity_ratio`,
        `instance_prompt` (pivotal tuning's holds its token: "a <sks>
        circle") and `steps`.
    """
    from studio.interop import load_backbone
    from studio.models.model_families import family_of
    from studio.trainers import DreamBoothSettings, build_dreambooth
    from studio.trainers.run.run_directory import RunDirectory
    from studio.trainers.run.training_run import TrainingRun

    base = ModelEvaluator(load_backbone(model))
    base_diversity = base.class_diversity(CLASS_PROMPT, num_images, seed=seed + 1000)
    base_fidelity = base.score_concept(INSTANCE_SUBJECT, INSTANCE_CONCEPT, num_images, seed=seed)

    family = FAMILY_DREAMBOOTH_SETTINGS.get(family_of(model), {})
    values = {**DREAMBOOTH_SETTINGS, **family, **(settings or {})}
    # Pivotal tuning learns a new token in the identifier's place: "a <sks> circle".
    subject = INSTANCE_SUBJECT.replace("sks", values["token"]) if values.get("token") else (
        INSTANCE_SUBJECT)
    settings = DreamBoothSettings(**dict(
        values,
        model=model,
        data=render_instance_set(os.path.join(out, "instance"), seed=seed),
        instance_prompt=f"a {subject}",
        class_prompt=CLASS_PROMPT if prior_preservation else None,
        class_data=os.path.join(out, "class-images"),
        seed=seed,
        steps=steps or values["steps"],
        cache_dir=os.path.join(out, "latent-cache"),
    ))
    trainer, batches = build_dreambooth(settings)
    directory = RunDirectory(os.path.join(out, "dreambooth"))
    directory.create(settings.to_config())
    TrainingRun(trainer, directory, settings.steps, save_every=settings.save_every,
                log_every=settings.log_every).fit(batches)

    # The trainer's view: the backbone with its LoRA (and a pivotal token's rows).
    tuned = ModelEvaluator(trainer.sampling_backbone(), classifier=base.classifier)
    fidelity = tuned.score_concept(subject, INSTANCE_CONCEPT, num_images, seed=seed)
    diversity = tuned.class_diversity(CLASS_PROMPT, num_images, seed=seed + 1000)
    return {
        "instance_fidelity": fidelity["concept_fidelity"],
        "base_instance_fidelity": base_fidelity["concept_fidelity"],
        "editability": fidelity["editability"],
        "class_diversity": diversity,
        "base_class_diversity": base_diversity,
        "diversity_ratio": diversity / base_diversity if base_diversity else None,
        "prior_preservation": prior_preservation,
        "instance_prompt": settings.instance_prompt,
        "steps": settings.steps,
    }
