"""Training objectives by type, chosen from a backbone's `objective` data.

A model family's backbone says how its denoiser was trained
(`DiffusionBackbone.objective`: `{"type": "ddpm", "prediction_type": ...}`);
`objective_for` builds the matching objective. SD3's flow matching
(`FlowMatchingObjective`) is registered under its own type.
"""

from studio.trainers.objectives.ddpm_objective import DDPM_OBJECTIVE, DDPMObjective
from studio.trainers.objectives.flow_matching_objective import (
    FLOW_MATCHING_OBJECTIVE,
    FlowMatchingObjective,
)

OBJECTIVES = {DDPM_OBJECTIVE: DDPMObjective, FLOW_MATCHING_OBJECTIVE: FlowMatchingObjective}


def objective_for(backbone, **options):
    """The objective `backbone` was trained with.

    Args:
        backbone: a `studio.models.DiffusionBackbone` (or a view of one).
        **options: the objective's training options (`min_snr_gamma`,
            `offset_noise`).

    Raises:
        ValueError: the backbone's objective type has no class here.
    """
    kind = backbone.objective["type"]
    if kind not in OBJECTIVES:
        raise ValueError(
            f"No training objective of type {kind!r}. Expected one of "
            f"{sorted(OBJECTIVES)}. Received: objective={backbone.objective!r}"
        )
    return OBJECTIVES[kind].from_backbone(backbone, **options)


__all__ = ["DDPMObjective", "FlowMatchingObjective", "OBJECTIVES", "objective_for"]
