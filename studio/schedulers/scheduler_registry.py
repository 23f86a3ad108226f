"""Samplers by name: our short names and AUTOMATIC1111's."""

from studio.errors import InvalidInputError
from studio.schedulers.ddim_scheduler import DDIMScheduler
from studio.schedulers.dpm_solver_multistep_scheduler import DPMSolverMultistepScheduler
from studio.schedulers.euler_discrete_scheduler import EulerDiscreteScheduler
from studio.schedulers.flow_match_euler_scheduler import FLOW_PREDICTION, FlowMatchEulerScheduler

# Short name -> (class, the arguments that the name fixes, A1111 name).
SAMPLERS = {
    "ddim": (DDIMScheduler, {}, "DDIM"),
    "euler": (EulerDiscreteScheduler, {"ancestral": False}, "Euler"),
    "euler_a": (EulerDiscreteScheduler, {"ancestral": True}, "Euler a"),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"use_karras_sigmas": False}, "DPM++ 2M"),
    "dpmpp_2m_karras": (
        DPMSolverMultistepScheduler,
        {"use_karras_sigmas": True},
        "DPM++ 2M Karras",
    ),
}
SCHEDULER_NAMES = tuple(SAMPLERS)
# Denoisers that predict a flow's velocity (SD3) sample with flow-matching
# Euler; DDIM with eta 0 on a straight path is the same step, so "ddim" (the
# default elsewhere) names it too. The other samplers need a DDPM schedule.
FLOW_SAMPLER_NAMES = ("euler", "ddim")
A1111_SAMPLER_NAMES = tuple(entry[2] for entry in SAMPLERS.values())


def scheduler_short_name(name):
    """Our short name for a sampler name, short or A1111's (any case).

    Args:
        name: e.g. `"euler_a"`, `"Euler a"` or `"DPM++ 2M"`.

    Returns:
        The short name, a key of `SAMPLERS`.

    Raises:
        ValueError: if the name is unknown.
    """
    wanted = str(name).strip().lower()
    for short, (_, _, a1111) in SAMPLERS.items():
        if wanted in (short, a1111.lower()):
            return short
    raise InvalidInputError(
        f"Unknown sampler. Expected one of {list(SCHEDULER_NAMES)} or "
        f"{list(A1111_SAMPLER_NAMES)}. Received: name={name!r}"
    )


def get_scheduler(name, **kwargs):
    """Builds a sampler from its name.

    Args:
        name: a short name (`"ddim"`, `"euler"`, `"euler_a"`, `"dpmpp_2m"`,
            `"dpmpp_2m_karras"`) or an A1111 name (`"DDIM"`, `"Euler"`,
            `"Euler a"`, `"DPM++ 2M"`, `"DPM++ 2M Karras"`).
        **kwargs: constructor arguments of the class (the noise schedule,
            `prediction_type`, `eta`, ...).

    Returns:
        A new `Scheduler`.

    Raises:
        ValueError: if the name is unknown, or `kwargs` contradict it
            (e.g. `get_scheduler("euler_a", ancestral=False)`).

    Example:

    ```python
    scheduler = get_scheduler("Euler a", prediction_type="v_prediction")
    scheduler.a1111_name  # "Euler a"
    ```
    """
    short = scheduler_short_name(name)
    if kwargs.get("prediction_type") == FLOW_PREDICTION:
        return _flow_scheduler(name, short, kwargs)
    cls, fixed, _ = SAMPLERS[short]
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise InvalidInputError(
                f"Sampler {name!r} means {key}={value}. Received: {key}={kwargs[key]}"
            )
    return cls(**{**kwargs, **fixed})


def _flow_scheduler(name, short, kwargs):
    """The flow-matching Euler sampler for a velocity-predicting (flow) denoiser."""
    if short not in FLOW_SAMPLER_NAMES:
        raise InvalidInputError(
            f"Sampler {name!r} needs a DDPM noise schedule; this model is a rectified flow "
            f"(SD3), which samples with flow-matching Euler. Expected one of "
            f"{list(FLOW_SAMPLER_NAMES)}. Received: sampler={name!r}"
        )
    options = {key: value for key, value in kwargs.items() if key != "prediction_type"}
    return FlowMatchEulerScheduler(**options)
