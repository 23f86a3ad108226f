"""The hook where the evaluation module scores the Compare page's grid.

The page calls

    studio.evaluation.score_comparison(images, prompts, reference_images, model=...) -> dict

which returns, for each row label, a dict of score name -> value (today:
the shapes classifier's prompt accuracy and reading on `tiny-shapes`
grids; CLIP scores for real models would plug in there), or None where
no score applies; the Compare page shows them beside the grid. The page
still works when an install lacks the evaluation module.
"""

import importlib

EVALUATION_MODULE = "studio.evaluation"
EVALUATION_FUNCTION = "score_comparison"


def score_comparison(images, prompts, reference_images=None, model=None):
    """Scores of each grid row, or None when no evaluation module is installed.

    Args:
        images: dict row label -> uint8 array `(columns, height, width, 3)`.
        prompts: dict row label -> the prompt of each column (list of str).
        reference_images: None or uint8 array of the concept's training
            images.
        model: the preset name the grid was generated with.

    Returns:
        None, or dict row label -> dict score name -> float.
    """
    try:
        module = importlib.import_module(EVALUATION_MODULE)
    except ModuleNotFoundError as error:
        if error.name not in (EVALUATION_MODULE, EVALUATION_MODULE.rsplit(".", 1)[0]):
            raise
        return None
    scorer = getattr(module, EVALUATION_FUNCTION, None)
    if scorer is None:
        return None
    return scorer(images, prompts, reference_images, model=model)
