"""The samplers give the same numbers under TensorFlow and JAX."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Run here and, in a subprocess, under the other backend.
SAMPLING_SCRIPT = """
import numpy as np
from keras import ops

from studio.schedulers import SCHEDULER_NAMES, NoiseSchedule, get_scheduler


def run():
    results = {}
    shape = (2, 8, 8, 4)
    for name in SCHEDULER_NAMES:
        for prediction_type in ("epsilon", "v_prediction"):
            rng = np.random.default_rng(7)
            scheduler = get_scheduler(name, prediction_type=prediction_type)
            scheduler.set_timesteps(6)
            latents = rng.standard_normal(shape).astype("float32")
            latents = latents * scheduler.init_noise_sigma
            for timestep in scheduler.timesteps:
                model_input = ops.convert_to_numpy(
                    scheduler.scale_model_input(latents, timestep)
                )
                # A stand-in UNet that depends on its input and the timestep.
                output = 0.7 * model_input + 0.01 * np.sin(float(timestep))
                noise = rng.standard_normal(shape).astype("float32")
                latents = ops.convert_to_numpy(
                    scheduler.step(output, int(timestep), latents, noise=noise)
                )
            results[f"{name}-{prediction_type}"] = latents
    rng = np.random.default_rng(8)
    clean = rng.standard_normal(shape).astype("float32")
    noise = rng.standard_normal(shape).astype("float32")
    timesteps = np.array([17, 901])
    schedule = NoiseSchedule(prediction_type="v_prediction")
    results["add_noise"] = ops.convert_to_numpy(schedule.add_noise(clean, noise, timesteps))
    results["target"] = ops.convert_to_numpy(
        schedule.training_target(clean, noise, timesteps)
    )
    results["snr"] = ops.convert_to_numpy(schedule.snr(timesteps))
    return results


if __name__ == "__main__":
    import sys

    np.savez(sys.argv[1], **run())
"""


@pytest.mark.skipif(
    keras.config.backend() != "tensorflow",
    reason="the TensorFlow run compares itself with a JAX subprocess",
)
def test_tensorflow_and_jax_agree(tmp_path):
    script = tmp_path / "sample.py"
    script.write_text(SAMPLING_SCRIPT)
    output = tmp_path / "jax.npz"
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, str(script), str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    namespace = {"__name__": "sampling_script"}
    exec(compile(SAMPLING_SCRIPT, "sampling_script", "exec"), namespace)
    here = namespace["run"]()
    there = dict(np.load(output))
    assert sorted(here) == sorted(there)
    for key in here:
        np.testing.assert_allclose(here[key], there[key], rtol=1e-5, atol=1e-5, err_msg=key)
