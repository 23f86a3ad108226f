"""SD3's flow-matching objective against diffusers' own functions, on the same random numbers."""

import numpy as np
import pytest
from keras import ops

from studio.trainers.objectives import FlowMatchingObjective, objective_for
from studio.trainers.objectives.flow_matching_objective import WEIGHTING_SCHEMES

BATCH = 64


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def torch_draw(scheme, seed):
    """The standard draw diffusers' density makes for `scheme` from a seeded generator."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    if scheme == "logit_normal":
        return torch.normal(0.0, 1.0, size=(BATCH,), generator=generator)
    return torch.rand(size=(BATCH,), generator=generator)


@pytest.mark.parametrize("scheme", WEIGHTING_SCHEMES)
def test_timestep_density_is_diffusers(scheme):
    import torch
    from diffusers.training_utils import compute_density_for_timestep_sampling
    objective = FlowMatchingObjective(
        weighting_scheme=scheme, logit_mean=0.3, logit_std=1.2, mode_scale=1.29
    )
    expected = compute_density_for_timestep_sampling(
        scheme, BATCH, logit_mean=0.3, logit_std=1.2, mode_scale=1.29,
        generator=torch.Generator().manual_seed(7),
    )  # fmt: skip
    draw = torch_draw(scheme, 7).numpy()
    np.testing.assert_allclose(numpy(objective.timestep_density(draw)), expected.numpy(), atol=1e-6)
    assert np.ptp(expected.numpy()) > 0.1  # not a constant


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_sigmas_are_the_schedulers_at_the_scripts_index(shift):
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    objective = FlowMatchingObjective(shift=shift)
    u = np.concatenate([np.linspace(0.0, 0.9999, 200), np.random.default_rng(0).random(50)])
    # train_dreambooth_lora_sd3.py: indices = (u * N).long(); sigmas at those timesteps.
    indices = (torch.from_numpy(u) * scheduler.config.num_train_timesteps).long()
    expected_timesteps = scheduler.timesteps[indices]
    expected_sigmas = scheduler.sigmas[indices]
    sigmas = numpy(objective.sigmas(u.astype("float32")))
    np.testing.assert_allclose(sigmas, expected_sigmas.numpy(), rtol=1e-5)
    np.testing.assert_allclose(sigmas * 1000, expected_timesteps.numpy(), rtol=1e-5)
    # Closed form at the ends: index 0 is sigma 1; shift 3 bends 0.5 to 0.75.
    assert sigmas[0] == pytest.approx(1.0)
    if shift == 3.0:
        assert numpy(objective.sigmas(np.float32([0.5])))[0] == pytest.approx(0.75)


@pytest.mark.parametrize("scheme", WEIGHTING_SCHEMES)
def test_loss_weights_are_diffusers(scheme):
    import torch
    from diffusers.training_utils import compute_loss_weighting_for_sd3
    sigmas = np.linspace(0.05, 1.0, 20).astype("float32")
    expected = compute_loss_weighting_for_sd3(scheme, torch.from_numpy(sigmas)).numpy()
    weights = numpy(FlowMatchingObjective(weighting_scheme=scheme).loss_weights(sigmas))
    np.testing.assert_allclose(weights, expected, rtol=1e-6)


@pytest.mark.parametrize("precondition", [False, True])
@pytest.mark.parametrize("scheme", ["logit_normal", "cosmap", "sigma_sqrt"])
def test_loss_is_the_sd3_scripts(precondition, scheme):
    """train_dreambooth_lora_sd3.py's noisy input, target, preconditioning and loss, in torch."""
    import torch
    from diffusers.training_utils import compute_loss_weighting_for_sd3
    rng = np.random.default_rng(3)
    x0, noise, prediction = (rng.normal(size=(4, 8, 8, 16)).astype("float32") for _ in range(3))
    sigmas = np.float32([0.1, 0.4, 0.75, 1.0])
    objective = FlowMatchingObjective(weighting_scheme=scheme, precondition_outputs=precondition)
    noisy, target = objective.noise(x0, noise, sigmas)
    loss = numpy(objective.loss(prediction, target, objective.loss_weights(sigmas)))

    t_x0, t_noise, t_pred = map(torch.from_numpy, (x0, noise, prediction))
    t_sigmas = torch.from_numpy(sigmas).reshape(-1, 1, 1, 1)
    t_noisy = (1.0 - t_sigmas) * t_x0 + t_sigmas * t_noise
    if precondition:
        t_pred = t_pred * (-t_sigmas) + t_noisy
        t_target = t_x0
    else:
        t_target = t_noise - t_x0
    weighting = compute_loss_weighting_for_sd3(scheme, t_sigmas)
    expected = torch.mean((weighting * (t_pred - t_target) ** 2).reshape(4, -1), 1).mean()
    np.testing.assert_allclose(numpy(noisy), t_noisy.numpy(), atol=1e-6)
    np.testing.assert_allclose(loss, expected.item(), rtol=1e-5)


def test_noisy_latents_lie_on_the_straight_path():
    import keras

    objective = FlowMatchingObjective(weighting_scheme="mode")
    x0 = np.random.default_rng(1).normal(size=(32, 4, 4, 16)).astype("float32")
    noisy, timesteps, target, weights = objective.noisy_latents(x0, keras.random.SeedGenerator(2))
    sigmas = numpy(timesteps) / 1000.0
    assert sigmas.min() > 0 and sigmas.max() <= 1 and np.ptp(sigmas) > 0.2
    # noisy = x0 + sigma * (noise - x0): the target is the path's velocity.
    np.testing.assert_allclose(
        numpy(noisy), x0 + sigmas[:, None, None, None] * numpy(target), atol=1e-5
    )
    np.testing.assert_array_equal(numpy(weights), np.ones(32, "float32"))


def test_objective_for_reads_the_backbones_data():
    class DataOnly:
        objective = {"type": "flow_matching", "num_train_timesteps": 1000, "shift": 3.0,
                     "latent_scale": 1.5305, "latent_shift": 0.0609}  # fmt: skip

    objective = objective_for(DataOnly(), weighting_scheme="cosmap")
    assert isinstance(objective, FlowMatchingObjective)
    assert (objective.shift, objective.latent_shift, objective.weighting_scheme) == (3.0, 0.0609, "cosmap")
    with pytest.raises(ValueError, match="min_snr_gamma=5.0"):
        objective_for(DataOnly(), min_snr_gamma=5.0)
    with pytest.raises(ValueError, match="weighting_scheme='snr'"):
        FlowMatchingObjective(weighting_scheme="snr")
