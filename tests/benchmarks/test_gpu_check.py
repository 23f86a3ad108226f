"""benchmarks/gpu_check.py: its CPU dry run gives every row, its plan and report hold together.

The dry run is the GPU check's whole code at tiny sizes on the CPU, so
that a session with a GPU never runs it for the first time there.
"""

import importlib.util
import inspect
import json
import math
import os
import subprocess
import sys
import types

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPOSITORY, "benchmarks", "gpu_check.py")
# The float32 dry run's pipelines compute the same function: rounding
# inside the networks may move a pixel by a level or two, on average far
# less.
FLOAT32_MAX_PIXEL_DIFF = 3.0
FLOAT32_MEAN_PIXEL_DIFF = 0.1


def _load(name):
    path = os.path.join(REPOSITORY, "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


@pytest.fixture(scope="module")
def gpu_check():
    return _load("gpu_check")


@pytest.fixture(scope="module")
def scales():
    return _load("gpu_check_scales")


def _numbers(value, path=""):
    """Every number inside `value`, with where it is."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")


# About 3 minutes on 2 cores (every row in JAX and PyTorch): CI runs it in
# its `large` step.
@pytest.mark.large
def test_cpu_dry_run_gives_every_row(tmp_path, gpu_check, scales):
    out = tmp_path / "dry.json"
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1")
    completed = subprocess.run(
        [sys.executable, SCRIPT, "--cpu-dry-run", "--out", str(out),
         "--work-dir", str(tmp_path / "work")],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    expected = [row["id"] for row in gpu_check.plan_rows(scales.SCALES["dry"])]
    assert [row["id"] for row in report["rows"]] == expected
    kinds = {row["kind"] for row in report["rows"]}
    assert kinds >= {"train", "generate", "numerics"}
    for row in report["rows"]:
        if row["kind"] == "family":
            continue
        for framework in ("studio", "diffusers"):
            side = row[framework]
            assert "error" not in side and "skipped" not in side, (row["id"], framework, side)
        for where, number in _numbers({k: row[k] for k in ("studio", "diffusers")}):
            assert math.isfinite(number), (row["id"], where, number)
    train = [row for row in report["rows"] if row["kind"] == "train"]
    assert {row["task"] for row in train} == set(scales.TRAIN_TASKS)
    for row in train:
        assert row["studio"]["steps_per_second"] > 0 and row["diffusers"]["steps_per_second"] > 0
        # The same trained weights on both sides: LoRA on the same layers,
        # the same UNet, one placeholder vector.
        assert row["studio"]["trained_parameters"] == row["diffusers"]["trained_parameters"], row
        assert math.isfinite(row["speedup"])
    full = [row for row in train if row["task"] == "full"]
    for row in full:
        studio = row["studio"]
        # XLA's count and the jaxpr's count of the same step agree.
        assert studio["flops"] > 0
        assert abs(studio["flops_counted"] / studio["flops"] - 1) < 0.1, studio
        assert math.isfinite(studio["tflops_per_s"])
    numerics = {row["precision"]: row for row in report["rows"] if row["kind"] == "numerics"}
    difference = numerics["float32"]["diffusers"]
    assert difference["max_abs_diff"] <= FLOAT32_MAX_PIXEL_DIFF, difference
    assert difference["mean_abs_diff"] <= FLOAT32_MEAN_PIXEL_DIFF, difference
    assert "GPU check (dry)" in completed.stdout


def test_full_plan_has_every_row_most_important_first(gpu_check, scales):
    scale = scales.SCALES["full"]
    rows = gpu_check.plan_rows(scale)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert ids[:3] == ["generate/mixed_float16/b1", "generate/mixed_float16/b4",
                       "numerics/mixed_float16"]
    train = [row for row in rows if row["kind"] == "train"]
    assert len(train) == len(scales.TRAIN_TASKS) * 2 * 2
    # Batch 1 fp16 first: the memory goals are there.
    assert {row["task"] for row in train[:4]} == set(scales.TRAIN_TASKS)
    assert all(row["precision"] == "mixed_float16" and row["batch"] == 1 for row in train[:4])
    jobs = gpu_check.plan_jobs(rows)
    # One worker per training row and framework; one per framework for generation.
    assert len(jobs) == 2 * (len(train) + 1)
    assert [framework for framework, _ in jobs[:2]] == ["studio", "diffusers"]
    assert [row["id"] for row in jobs[0][1]] == ids[:3]
    assert gpu_check.plan_rows(scale, only=["train/full/", "b4"])[0]["id"] == (
        "generate/mixed_float16/b4")


def test_peak_rates_by_device_name(scales):
    assert scales.peak_flops("gpu: NVIDIA H200") == 989e12
    assert scales.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert scales.peak_flops("Tesla T4") == 65e12
    assert scales.peak_flops("Tesla P100-PCIE-16GB") == 18.7e12
    assert scales.peak_flops("cpu: cpu") is None


def test_budget_skips_rows_with_a_note(tmp_path, gpu_check, capsys):
    out = tmp_path / "skipped.json"
    assert gpu_check.main(["--cpu-dry-run", "--budget-s", "0", "--out", str(out),
                           "--work-dir", str(tmp_path)]) == 0
    report = json.loads(out.read_text())
    measured = [row for row in report["rows"] if row["kind"] != "family"]
    assert measured
    for row in measured:
        assert "time budget" in row["studio"]["skipped"], row
    # A family in the tree without GPU rows yet (SDXL, SD3) is a row that says so.
    for row in report["rows"]:
        if row["kind"] == "family":
            assert "exists" in row["note"], row
    assert "skipped: time budget" in capsys.readouterr().out


def test_a_failing_row_is_reported_and_the_next_runs(tmp_path, gpu_check, scales):
    rows = [{"id": "bad/1", "kind": "no-such-kind"}, {"id": "bad/2", "kind": "no-such-kind"}]
    found, meta = gpu_check.run_job("diffusers", rows, scales.SCALES["dry"], str(tmp_path), 300)
    assert set(found) == {"bad/1", "bad/2"}
    assert all("KeyError" in result["error"] for result in found.values()), found
    assert meta["device"]
    report = gpu_check.build_report(
        [{"id": "train/ti/mixed_float16/b1", "kind": "train", "task": "ti",
          "precision": "mixed_float16", "batch": 1}],
        {("train/ti/mixed_float16/b1", "studio"): {"error": "XlaRuntimeError: RESOURCE_EXHAUSTED"}},
        {}, scales.SCALES["full"], 450, 1.0, [],
    )
    table = gpu_check.format_table(report)
    assert "studio: ERROR XlaRuntimeError: RESOURCE_EXHAUSTED" in table
    assert "diffusers: skipped: not run" in table


def _namespace(cls, config):
    """An object with the constructor's arguments as attributes (defaults filled in)."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return types.SimpleNamespace(**{**defaults, **config})


@pytest.mark.parametrize("scale_name", ["full", "dry"])
def test_diffusers_configs_are_the_studio_networks(scale_name, scales):
    """The reference networks' configs equal what the studio exports for its preset."""
    from studio.interop.diffusers_configs import (
        text_encoder_config_to_transformers,
        unet_config_to_diffusers,
        vae_config_to_diffusers,
    )
    from studio.models import BACKBONE_PRESETS, CLIPTextEncoder, UNet, VAEEncoder

    scale = scales.SCALES[scale_name]
    preset = BACKBONE_PRESETS[scale.preset]
    latent_size = scale.resolution // 8
    unet = _namespace(UNet, preset["unet"]["config"])
    exported = {
        "unet": unet_config_to_diffusers(unet, latent_size),
        "vae": vae_config_to_diffusers(
            _namespace(VAEEncoder, preset["vae_encoder"]["config"]), 0.18215, scale.resolution
        ),
        "text_encoder": text_encoder_config_to_transformers(
            _namespace(CLIPTextEncoder, preset["text_encoder"]["config"]),
            types.SimpleNamespace(start_token_id=0, end_token_id=1, pad_token_id=1),
        ),
    }
    for network, config in exported.items():
        ours = scale.diffusers[network]
        assert {key: config[key] for key in ours} == ours, network
    assert preset["noise_schedule"] == scale.diffusers["scheduler"]
