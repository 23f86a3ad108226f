"""Benchmark: the studio's generation against diffusers' `StableDiffusionPipeline`, side by side.

Both generate with the same SD 1.x networks (the `sd-v1` preset's
architecture, random weights, nothing downloaded) at the same size, steps
(DDIM), guidance and start latents:

* `studio-tensorflow`: `TextToImagePipeline` (its defaults: on a CPU in
  float32 the larger 3x3 convolutions use Winograd's algorithm, the
  `winograd` field of its rows) under Keras' TensorFlow backend; it builds the random networks (with diffusers' numerics, as an
  imported model) and exports them as a diffusers folder for the others.
* `studio-jax`: the same pipeline under JAX, the networks imported from
  that folder.
* `diffusers`: `StableDiffusionPipeline.from_pretrained(folder)` (PyTorch,
  float32, all cores), with the studio's start latents and token ids.

Each variant runs in its own subprocess (one backend per process, its own
peak memory), one after the other, in one run. For every batch size: the
first call (tracing and compiling) is timed apart, then `--repeats` warm
calls; the table shows the median warm latency and its ratio to
diffusers'. The diffusers worker also reports the largest pixel difference
from the studio-tensorflow images (same weights, same latents).

Usage:

    python benchmarks/generation.py [--resolution 256] [--steps 10] [--batches 1 4]
        [--repeats 2] [--variants studio-tensorflow studio-jax diffusers] [--out FILE.json]

The goal (issue 21, reported, not asserted): on the CPU, warm latency
<= 1.0x diffusers' at batch 1 and <= 0.8x at batch 4, on both backends.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PRESET = "sd-v1"
PROMPT = "a photo of an astronaut riding a horse on the moon"
SEED = 1234
GUIDANCE_SCALE = 7.5
VARIANTS = ("studio-tensorflow", "studio-jax", "diffusers")
BACKENDS = {"studio-tensorflow": "tensorflow", "studio-jax": "jax", "diffusers": "jax"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        rows = WORKERS[args.worker](args)
        print("ROWS " + json.dumps(rows), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        for variant in VARIANTS:
            if variant not in args.variants:
                continue
            rows += _run_worker(variant, args, work_dir)
    _print_table(rows, args)
    if args.out:
        with open(args.out, "w") as file:
            json.dump(rows, file, indent=2)


def _run_worker(variant, args, work_dir):
    command = [
        sys.executable, os.path.abspath(__file__), "--worker", variant, "--work-dir", work_dir,
        "--resolution", str(args.resolution), "--steps", str(args.steps),
        "--repeats", str(args.repeats), "--batches", *map(str, args.batches),
    ]
    env = dict(os.environ, KERAS_BACKEND=BACKENDS[variant], TF_CPP_MIN_LOG_LEVEL="2")
    print(f"--- {variant}", flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("ROWS ")]
    if done.returncode or not lines:
        print(done.stdout[-2000:], done.stderr[-4000:], sep="\n", file=sys.stderr)
        return [{"variant": variant, "error": f"exit {done.returncode}"}]
    rows = json.loads(lines[-1][len("ROWS "):])
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def _print_table(rows, args):
    print(f"\nSD 1.x architecture (random weights), {args.resolution} px, {args.steps} DDIM "
          f"steps, CFG {GUIDANCE_SCALE}, float32; warm latency = median of {args.repeats}")
    print("| variant | batch | first call s | warm s | vs diffusers | max pixel diff |")
    print("|---|---|---|---|---|---|")
    reference = {
        row["batch"]: row["latency_s"] for row in rows
        if row.get("variant") == "diffusers" and "latency_s" in row
    }
    for row in rows:
        if "error" in row:
            print(f"| {row['variant']} | - | failed: {row['error']} | | | |")
            continue
        ratio = (
            f"{row['latency_s'] / reference[row['batch']]:.2f}x"
            if row["batch"] in reference else "-"
        )
        diff = row.get("max_abs_diff")
        print(f"| {row['variant']} | {row['batch']} | {row['first_s']:.1f} | "
              f"{row['latency_s']:.1f} | {ratio} | {'-' if diff is None else f'{diff:.0f}'} |")


def _time(generate, repeats):
    start = time.perf_counter()
    result = generate()
    first = time.perf_counter() - start
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = generate()
        durations.append(time.perf_counter() - start)
    return result, first, statistics.median(durations)


def _studio_worker(args):
    import keras

    from studio.interop import export_diffusers_folder, import_model
    from studio.pipelines import TextToImagePipeline

    folder = os.path.join(args.work_dir, "diffusers")
    if keras.backend.backend() == "tensorflow":
        from gpu_check_studio import build_backbone

        backbone = build_backbone(PRESET, "float32", diffusers_numerics=True)
        export_diffusers_folder(backbone, folder, dtype="float32", overwrite=True)
    else:
        backbone = import_model(folder)
    pipeline = TextToImagePipeline(backbone)
    variant = f"studio-{keras.backend.backend()}"
    rows = []
    for batch in args.batches:
        prompts = [PROMPT] * batch

        def generate():
            return pipeline(prompts, num_steps=args.steps, guidance_scale=GUIDANCE_SCALE,
                            seed=SEED, height=args.resolution, width=args.resolution,
                            sampler="ddim").images

        images, first, latency = _time(generate, args.repeats)
        if variant == "studio-tensorflow":
            np.savez(os.path.join(args.work_dir, f"studio-b{batch}.npz"), images=images,
                     token_ids=backbone.tokenizer(prompts),
                     negative_token_ids=backbone.tokenizer([""] * batch))
        rows.append({"variant": variant, "batch": batch, "first_s": first, "latency_s": latency,
                     "winograd": pipeline.winograd})
    return rows


def _diffusers_worker(args):
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    folder = os.path.join(args.work_dir, "diffusers")
    pipeline = StableDiffusionPipeline.from_pretrained(
        folder, torch_dtype=torch.float32, safety_checker=None, requires_safety_checker=False
    )
    # The studio's DDIM: SD's config ("leading", steps_offset 1, alphas_cumprod[0] at the end).
    pipeline.scheduler = DDIMScheduler.from_config(
        pipeline.scheduler.config, steps_offset=1, set_alpha_to_one=False, clip_sample=False,
        timestep_spacing="leading",
    )
    pipeline.set_progress_bar_config(disable=True)
    size = args.resolution // 8
    rows = []
    for batch in args.batches:
        studio_path = os.path.join(args.work_dir, f"studio-b{batch}.npz")
        studio = np.load(studio_path) if os.path.exists(studio_path) else None
        # The studio draws image i's start latents from default_rng(seed + i).
        latents = np.stack([
            np.random.default_rng(SEED + index).standard_normal((size, size, 4), dtype=np.float32)
            for index in range(batch)
        ]).transpose(0, 3, 1, 2)
        latents = torch.from_numpy(np.ascontiguousarray(latents))
        if studio is not None:
            token_ids = torch.from_numpy(studio["token_ids"].astype("int64"))
            negative_ids = torch.from_numpy(studio["negative_token_ids"].astype("int64"))
        else:
            token_ids = negative_ids = torch.zeros((batch, 77), dtype=torch.int64)

        def generate():
            with torch.no_grad():
                context = pipeline.text_encoder(token_ids)[0]
                unconditional = pipeline.text_encoder(negative_ids)[0]
                return pipeline(
                    prompt_embeds=context, negative_prompt_embeds=unconditional,
                    latents=latents, num_inference_steps=args.steps,
                    guidance_scale=GUIDANCE_SCALE, height=args.resolution,
                    width=args.resolution, eta=0.0, output_type="np",
                ).images

        images, first, latency = _time(generate, args.repeats)
        row = {"variant": "diffusers", "batch": batch, "first_s": first, "latency_s": latency,
               "torch_threads": torch.get_num_threads()}
        if studio is not None:
            pixels = np.clip(np.round(images.astype("float64") * 255.0), 0, 255)
            row["max_abs_diff"] = float(np.abs(pixels - studio["images"]).max())
        rows.append(row)
    return rows


WORKERS = {
    "studio-tensorflow": _studio_worker,
    "studio-jax": _studio_worker,
    "diffusers": _diffusers_worker,
}


if __name__ == "__main__":
    main()
