"""Samplers by name: our short names and AUTOMATIC1111's."""

from studio.errors import InvalidInputError
from studio.schedulers.ddim_scheduler import DDIMScheduler
from studio.schedulers.dpm_solver_multistep_scheduler import DPMSolverMultistepScheduler
from studio.schedulers.euler_discrete_scheduler import EulerDiscreteScheduler

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
    cls, fixed, _ = SAMPLERS[scheduler_short_name(name)]
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise InvalidInputError(
                f"Sampler {name!r} means {key}={value}. Received: {key}={kwargs[key]}"
            )
    return cls(**{**kwargs, **fixed})
