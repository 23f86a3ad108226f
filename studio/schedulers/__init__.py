"""Noise schedules and samplers (diffusers' scheduler contract, `keras.ops` math).

Importing this package imports neither TensorFlow nor keras_cv.
"""

from studio.schedulers.ddim_scheduler import DDIMScheduler
from studio.schedulers.dpm_solver_multistep_scheduler import DPMSolverMultistepScheduler
from studio.schedulers.euler_discrete_scheduler import EulerDiscreteScheduler
from studio.schedulers.flow_match_euler_scheduler import FlowMatchEulerScheduler
from studio.schedulers.noise_schedule import NoiseSchedule
from studio.schedulers.scheduler import Scheduler
from studio.schedulers.scheduler_registry import (
    A1111_SAMPLER_NAMES,
    SCHEDULER_NAMES,
    get_scheduler,
    scheduler_short_name,
)

__all__ = [
    "A1111_SAMPLER_NAMES",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "EulerDiscreteScheduler",
    "FlowMatchEulerScheduler",
    "NoiseSchedule",
    "SCHEDULER_NAMES",
    "Scheduler",
    "get_scheduler",
    "scheduler_short_name",
]
