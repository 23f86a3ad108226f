"""Concept fidelity of trained files: a model with embedding and LoRA files, scored on the shapes world."""

from studio.evaluation.model_evaluator import UNNAMED_CONCEPT, ModelEvaluator

# Images per measure (fidelity, editability), as the demo's scores.
CONCEPT_SCORE_IMAGES = 40


def score_concept_files(model, subject, embeddings=(), loras=(), concept=None,
                        num_images=CONCEPT_SCORE_IMAGES, seed=0, names=None):
    """Scores "a {subject}" on a shapes-world model with trained files applied.

    Any family of the shapes world works (`tiny-shapes`, `tiny-shapes-xl`,
    a folder saved from them): the files are applied as generation applies
    them (LoRA files merged into the networks at strength 1, embeddings
    through `backbone_with_embeddings`, so SDXL's `{clip_l, clip_g}` files
    fill both encoders). Textual inversion and pivotal tuning are scored by
    calling it twice: before, with the initializer word as `subject` and no
    files (what the placeholder reads as at step 0, its rows being the
    word's); after, with the placeholder and the run's files.

    Args:
        model: a preset name or a model folder (`studio.interop.load_backbone`).
        subject: the words that should show the concept ("<cross>").
        embeddings: paths of embedding files (any format the studio reads).
        loras: paths of LoRA files.
        concept: dict attribute -> class the images must show (default:
            the world's unnamed shape, the cross).
        num_images: images per measure.
        seed: the first image's seed.
        names: each embedding's placeholder where its file names none (see
            `backbone_with_embeddings`).

    Returns:
        `ModelEvaluator.score_concept`'s dict: `concept_fidelity`,
        `editability`, `edited_fidelity`.

    Example:

    ```python
    before = score_concept_files("tiny-shapes-xl", "shape")
    after = score_concept_files("tiny-shapes-xl", "<cross>", embeddings=["cross.safetensors"],
                                loras=["cross_lora.safetensors"])
    ```
    """
    from studio.embeddings import load_embedding
    from studio.embeddings.backbone_with_embeddings import backbone_with_embeddings
    from studio.interop import load_backbone
    from studio.lora.lora_weights import LoRAWeights

    backbone = load_backbone(model)
    for path in loras:
        LoRAWeights.load(path).apply(backbone, scale=1.0)
    if embeddings:
        backbone = backbone_with_embeddings(
            backbone, [load_embedding(path) for path in embeddings], names=names)
    return ModelEvaluator(backbone).score_concept(
        subject, concept or UNNAMED_CONCEPT, num_images=num_images, seed=seed)
