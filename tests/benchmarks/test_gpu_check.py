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


def _dry_run(tmp_path, families):
    """The dry run of `families` in a subprocess: its JSON report and its stdout."""
    out = tmp_path / "dry.json"
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONUNBUFFERED="1")
    options = [option for family in families for option in ("--family", family)]
    completed = subprocess.run(
        [sys.executable, SCRIPT, "--cpu-dry-run", "--out", str(out),
         "--work-dir", str(tmp_path / "work"), *options],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    for row in report["rows"]:
        for framework in ("studio", "diffusers"):
            side = row[framework]
            assert "error" not in side and "skipped" not in side, (row["id"], framework, side)
        for where, number in _numbers({k: row[k] for k in ("studio", "diffusers")}):
            assert math.isfinite(number), (row["id"], where, number)
    return report, completed.stdout


# About 3 minutes on 2 cores (every SD 1.x row in JAX and PyTorch): CI runs
# it in its `large` step.
@pytest.mark.large
def test_cpu_dry_run_gives_every_row(tmp_path, gpu_check, scales):
    report, stdout = _dry_run(tmp_path, ["sd"])
    expected = [row["id"] for row in gpu_check.plan_rows(scales.SCALES["dry"], families=["sd"])]
    assert [row["id"] for row in report["rows"]] == expected
    kinds = {row["kind"] for row in report["rows"]}
    assert kinds >= {"train", "generate", "numerics"}
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
    assert "GPU check (dry)" in stdout


# The SD-XL and SD3 rows (tiny-sdxl, tiny-sd3, 64 px, bf16, one warm-up and
# one timed step): about 1 minute on 2 cores, in CI's `large` step.
@pytest.mark.large
def test_cpu_dry_run_gives_the_sdxl_and_sd3_rows(tmp_path, gpu_check, scales):
    report, stdout = _dry_run(tmp_path, ["sdxl", "sd3"])
    rows = {row["id"]: row for row in report["rows"]}
    expected = gpu_check.plan_rows(scales.SCALES["dry"], families=["sdxl", "sd3"])
    assert list(rows) == [row["id"] for row in expected] == [
        "sdxl/ti/mixed_bfloat16/b1", "sdxl/lora/mixed_bfloat16/b1", "sd3/lora/mixed_bfloat16/b1",
    ]  # fmt: skip
    for row in rows.values():
        assert row["studio"]["steps_per_second"] > 0 and row["diffusers"]["steps_per_second"] > 0
        assert math.isfinite(row["speedup"]) and row["studio"]["weights_gib"] > 0
        # Prior preservation: a class example beside each subject example.
        expected_batch = 1 if row["task"] == "ti" else 2
        assert row["studio"]["unet_batch"] == row["diffusers"]["unet_batch"] == expected_batch
    # The same trained weights on both sides: one placeholder row in each
    # of SD-XL's two tables; LoRA on the same UNet layers.
    ti = rows["sdxl/ti/mixed_bfloat16/b1"]
    assert ti["studio"]["trained_parameters"] == ti["diffusers"]["trained_parameters"] == 32 + 64
    lora = rows["sdxl/lora/mixed_bfloat16/b1"]
    assert lora["studio"]["trained_parameters"] == lora["diffusers"]["trained_parameters"]
    assert lora["studio"]["remat"] == "UNet blocks"
    # SD3: our fused qkv has one LoRA, peft gives q, k and v one each.
    sd3 = rows["sd3/lora/mixed_bfloat16/b1"]
    assert 0 < sd3["studio"]["trained_parameters"] < sd3["diffusers"]["trained_parameters"]
    assert sd3["studio"]["remat"] == "MMDiT joint blocks"
    assert "SD-XL textual inversion bf16 b1" in stdout
    assert "SD3.5-M rows: keras-hub classes, 64 px" in stdout


def test_training_rows_build_the_backbone_as_the_trainers_load_it(scales):
    """TI and LoRA rows store the frozen networks in half precision, full rows keep float32."""
    from studio.trainers.settings.precision import backbone_policy

    studio_rows = _load("gpu_check_studio")
    for precision in scales.PRECISIONS:
        half = precision.removeprefix("mixed_")
        policies = {task: studio_rows.training_policy({"task": task, "precision": precision})
                    for task in scales.TRAIN_TASKS}  # fmt: skip
        assert policies == {"ti": half, "lora": half, "full_lean": precision, "full": precision}
        assert policies["lora"] == backbone_policy(precision, frozen=True)


def test_full_plan_has_every_row_most_important_first(gpu_check, scales):
    scale = scales.SCALES["full"]
    rows = gpu_check.plan_rows(scale)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert ids[:3] == ["generate/mixed_float16/b1", "generate/mixed_float16/b4",
                       "numerics/mixed_float16"]
    train = [row for row in rows if row["kind"] == "train" and "family" not in row]
    assert len(train) == len(scales.TRAIN_TASKS) * 2 * 2
    # Batch 1 fp16 first: the issue's memory goals are there.
    assert {row["task"] for row in train[:4]} == set(scales.TRAIN_TASKS)
    assert all(row["precision"] == "mixed_float16" and row["batch"] == 1 for row in train[:4])
    # The newer families' rows come last: the issues' 1024 px, batch 1, fp16.
    newer = rows[len(rows) - 3 :]
    assert [row["id"] for row in newer] == [
        "sdxl/ti/mixed_float16/b1", "sdxl/lora/mixed_float16/b1", "sd3/lora/mixed_float16/b1",
    ]  # fmt: skip
    assert all(scale.families[row["family"]].resolution == 1024 for row in newer)
    assert scale.families["sdxl"].remat and scale.families["sd3"].remat
    assert [row["id"] for row in gpu_check.plan_rows(scale, families=["sd3"])] == [
        "sd3/lora/mixed_float16/b1"]
    assert gpu_check.plan_rows(scale, only=["sdxl"]) == newer[:2]
    jobs = gpu_check.plan_jobs(rows)
    # One worker per training row and framework; one per framework for generation.
    assert len(jobs) == 2 * (len(train) + len(newer) + 1)
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
    measured = report["rows"]
    assert measured
    for row in measured:
        assert "time budget" in row["studio"]["skipped"], row
    assert {row.get("family", "sd") for row in measured} == {"sd", "sdxl", "sd3"}
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


def test_workers_get_the_studio_xla_flags_and_one_compilation_cache(tmp_path, gpu_check, monkeypatch):
    seen, caches = {}, set()

    def fake_run(command, env, **kwargs):
        seen[command[command.index("--worker") + 1]] = env.get("XLA_FLAGS", "")
        caches.add(env["JAX_COMPILATION_CACHE_DIR"])
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="stopped by the test")

    monkeypatch.setattr(gpu_check.subprocess, "run", fake_run)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    out = tmp_path / "flags.json"
    assert gpu_check.main(["--only", "train/ti/mixed_float16/b1", "--family", "sd",
                           "--studio-xla-flags=--xla_gpu_autotune_level=0",
                           "--out", str(out), "--work-dir", str(tmp_path)]) == 0
    assert seen == {"studio": "--xla_gpu_autotune_level=0", "diffusers": ""}
    # The workers share one compilation cache in the work folder.
    assert caches == {str(tmp_path / "jax-cache")}
    report = json.loads(out.read_text())
    assert "--studio-xla-flags=--xla_gpu_autotune_level=0" in report["meta"]["command"]
    assert "stopped by the test" in report["rows"][0]["studio"]["error"]


def test_studio_memory_details_are_reported_beside_the_peak(gpu_check, scales):
    row = {"id": "train/ti/mixed_float16/b1", "kind": "train", "task": "ti",
           "precision": "mixed_float16", "batch": 1}
    studio = {"steps_per_second": 17.9, "first_s": 73.3, "peak_gib": 28.8, "in_use_gib": 2.25,
              "largest_alloc_gib": 12.5, "seconds_per_step": 0.056}
    report = gpu_check.build_report([row], {(row["id"], "studio"): studio}, {},
                                    scales.SCALES["full"], 450, 1.0, [])
    assert ("studio holds 2.25 GiB after the steps, largest allocation 12.50 GiB"
            in gpu_check.format_table(report))


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


@pytest.mark.parametrize("scale_name", ["full", "dry"])
def test_sdxl_diffusers_configs_are_the_studio_networks(scale_name, scales):
    """SD-XL's reference configs equal what the studio exports for `sdxl-base` / `tiny-sdxl`."""
    from studio.interop.diffusers_configs import (
        text_encoder_config_to_transformers,
        unet_config_to_diffusers,
    )
    from studio.models import BACKBONE_PRESETS, CLIPTextEncoder, UNet

    family = scales.SCALES[scale_name].families["sdxl"]
    preset = BACKBONE_PRESETS[family.preset]
    unet = _namespace(UNet, preset["unet"]["config"])
    exported = {"unet": unet_config_to_diffusers(unet, family.resolution // 8)}
    tokenizer = types.SimpleNamespace(start_token_id=0, end_token_id=1, pad_token_id=1)
    for name in ("text_encoder", "text_encoder_2"):
        encoder = _namespace(CLIPTextEncoder, preset[name]["config"])
        config = text_encoder_config_to_transformers(encoder, tokenizer)
        if encoder.projection_dim:  # bigG's text projection (CLIPTextModelWithProjection).
            config["projection_dim"] = encoder.projection_dim
        exported[name] = config
    for network, config in exported.items():
        ours = family.diffusers[network]
        assert {key: config.get(key) for key in ours} == ours, network
    assert preset["noise_schedule"] == family.diffusers["scheduler"]
    assert preset["latent_scale"] == family.diffusers["latent_scale"]
    assert preset["image_size"] == family.resolution


@pytest.mark.parametrize("scale_name", ["full", "dry"])
def test_sd3_keras_hub_and_diffusers_configs_are_one_network(scale_name, scales):
    """The MMDiT's keras-hub arguments and `SD3Transformer2DModel`'s config: one network."""
    family = scales.SCALES[scale_name].families["sd3"]
    studio = family.studio
    mmdit = studio["mmdit"]
    hidden, heads = mmdit["mmdit_hidden_dim"], mmdit["mmdit_num_heads"]
    assert family.diffusers["transformer"] == {
        "sample_size": studio["image_size"] // 8,
        "patch_size": mmdit["mmdit_patch_size"],
        "in_channels": mmdit["latent_channels"],
        "out_channels": mmdit["latent_channels"],
        "num_layers": mmdit["mmdit_num_layers"],
        "attention_head_dim": hidden // heads,
        "num_attention_heads": heads,
        # keras-hub pads the CLIP context to T5's width when it has no T5.
        "joint_attention_dim": 4096,
        "caption_projection_dim": hidden,
        "pooled_projection_dim": studio["clip_l"]["hidden_dim"] + studio["clip_g"]["hidden_dim"],
        "pos_embed_max_size": mmdit["mmdit_position_size"],
        "dual_attention_layers": list(mmdit["mmdit_dual_attention_indices"] or []),
        "qk_norm": mmdit["mmdit_qk_norm"],
    }
    assert family.diffusers["scheduler"] == studio["flow_schedule"]
    assert (family.diffusers["latent_scale"], family.diffusers["latent_shift"]) == (
        studio["vae"]["scale"], studio["vae"]["shift"])
    assert studio["image_size"] == family.resolution
    if scale_name == "dry":
        from studio.models.presets import SD3_PRESETS

        # tiny-sd3, with SD3.5 medium's q/k norms and dual attention.
        preset = SD3_PRESETS["tiny-sd3"]
        sd35_features = {"mmdit_qk_norm": "rms_norm", "mmdit_dual_attention_indices": [0]}
        assert {key: preset[key] for key in studio if key != "mmdit"} == {
            key: value for key, value in studio.items() if key != "mmdit"}
        assert dict(preset["mmdit"], **sd35_features) == studio["mmdit"]


def test_family_rows_report_the_issues_goals(gpu_check, scales):
    scale = scales.SCALES["full"]
    rows = gpu_check.plan_rows(scale, families=["sdxl", "sd3"])

    def side(steps_per_second, peak_gib, trained=10):
        return {"steps_per_second": steps_per_second, "seconds_per_step": 1 / steps_per_second,
                "first_s": 60.0, "peak_gib": peak_gib, "weights_gib": 9.0,
                "trained_parameters": trained}  # fmt: skip

    ti, lora, sd3 = (row["id"] for row in rows)
    results = {
        (ti, "studio"): side(3.0, 11.0), (ti, "diffusers"): side(2.0, 15.0),
        (lora, "studio"): side(1.0, 15.0), (lora, "diffusers"): side(1.0, 13.0),
        (sd3, "studio"): {"error": "XlaRuntimeError: RESOURCE_EXHAUSTED"},
        (sd3, "diffusers"): side(1.0, 13.0),
    }  # fmt: skip
    report = gpu_check.build_report(rows, results, {}, scale, 480, 1.0, [])
    goals = {row["id"]: row.get("goals") for row in report["rows"]}
    assert goals[ti] == {"speedup >= 1.2": True, "peak <= 12 GiB": True}
    assert goals[lora] == {"speedup >= 1.2": False, "peak <= 14 GiB": False}
    assert goals[sd3] is None  # Nothing to judge without the studio's side.
    table = gpu_check.format_table(report)
    assert "SD-XL rows: sdxl-base, 1024 px" in table
    assert "SD-XL DreamBooth LoRA r4 fp16 b1" in table
    assert "peak <= 14 GiB: NOT met" in table
    assert "studio: ERROR XlaRuntimeError: RESOURCE_EXHAUSTED" in table


def test_full_size_reference_networks_build_at_the_release_sizes(scales):
    """diffusers and transformers take the full-size configs (built on the meta device: no memory)."""
    import torch
    from diffusers import SD3Transformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    families = scales.SCALES["full"].families
    sdxl = families["sdxl"].diffusers
    with torch.device("meta"):
        unet = UNet2DConditionModel(**sdxl["unet"])
        clip_l = CLIPTextModel(CLIPTextConfig(**sdxl["text_encoder"]))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**sdxl["text_encoder_2"]))
        mmdit = SD3Transformer2DModel(**families["sd3"].diffusers["transformer"])

    def size(network, buffers=False):
        tensors = list(network.parameters()) + (list(network.buffers()) if buffers else [])
        return sum(tensor.numel() for tensor in tensors)

    # sd_xl_base_1.0's UNet, CLIP ViT-L and OpenCLIP ViT-bigG with its projection.
    assert (size(unet), size(clip_l), size(clip_g)) == (2_567_463_684, 123_060_480, 694_659_840)
    # SD3.5 medium: "2.5 billion parameters", its 384 x 384 position table included.
    assert 2.4e9 < size(mmdit, buffers=True) < 2.6e9
    assert len(mmdit.transformer_blocks) == 24
    assert sum(block.attn2 is not None for block in mmdit.transformer_blocks) == 13
