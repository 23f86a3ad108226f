"""Benchmark: peak memory and speed of one DreamBooth training step, full and LoRA.

Trains the full-size SD 1.x UNet (random weights: the `sd-v1`
architecture) as `studio train dreambooth` does, with prior preservation:
each step sees `--batch-size` subject examples and as many class examples,
as cached VAE moments and precomputed text embeddings (the text encoder is
frozen). Each mode runs in a fresh subprocess, so that its peak memory is
its own:

* `lora`: LoRA (rank `--lora-rank`) on the UNet's attention projections,
  AdamW; the base weights are frozen.
* `full`: every UNet weight, AdamW (float32 master weights and two moments).
* `full-lean`: every UNet weight with the memory-lean choices of
  `studio train dreambooth`: Adafactor (factored second moments, no first
  moment) and `--remat` (UNet blocks recompute their activations in the
  backward pass).

Peak memory is the accelerator's peak (JAX: `memory_stats()`; TensorFlow:
`get_memory_info`) when there is one, else the process's peak resident
memory. The goals, on a GPU at 512 px, batch 1, `mixed_float16`: full
fine-tuning <= 15 GiB, LoRA <= 8 GiB. On a CPU the default resolution is
64 px (a 512 px full-size step takes minutes there). Usage:

    KERAS_BACKEND=jax python benchmarks/dreambooth_step.py --precision mixed_float16
    python benchmarks/dreambooth_step.py            # CPU: 64 px, float32

Timings and memory are compared only within one run.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from random_backbone import build_random_backbone, current_rss_mib

MODES = ("lora", "full", "full-lean")
RESULT_PREFIX = "RESULT "
GIB = 1024**3
MIB = 1024**2
# Goals of the DreamBooth issue, on a 16 GB GPU at 512 px, batch 1.
GOAL_GIB = {"full": 15.0, "full-lean": 15.0, "lora": 8.0}
ACCELERATOR_RESOLUTION = 512
CPU_RESOLUTION = 64
INSTANCE_PROMPT = "a photo of sks dog"
CLASS_PROMPT = "a photo of a dog"
LORA_LEARNING_RATE = 1e-4
FULL_LEARNING_RATE = 5e-6


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="sd-v1", help="architecture (default: sd-v1)")
    parser.add_argument("--resolution", type=int, default=None,
                        help=f"image size (default: {ACCELERATOR_RESOLUTION} on an accelerator, "
                        f"{CPU_RESOLUTION} on a CPU)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="subject images per step; as many class images join them")
    parser.add_argument("--precision", default="float32",
                        choices=("float32", "mixed_float16", "mixed_bfloat16"))
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed first steps (tracing and compiling)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        parser.error(f"--modes must name {', '.join(MODES)}. Received: {', '.join(unknown)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.mode:
        print(RESULT_PREFIX + json.dumps(run_mode(args)), flush=True)
        return 0
    results = {}
    for mode in args.modes:
        print(f"Running {mode} in a fresh process ...", flush=True)
        results[mode] = run_in_subprocess(mode, args)
    print_report(results, args)
    return 0


def run_in_subprocess(mode, args):
    command = [
        sys.executable, os.path.abspath(__file__), "--mode", mode, "--preset", args.preset,
        "--batch-size", str(args.batch_size), "--precision", args.precision,
        "--lora-rank", str(args.lora_rank), "--warmup", str(args.warmup),
        "--steps", str(args.steps),
    ]
    if args.resolution:
        command += ["--resolution", str(args.resolution)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        # An out-of-memory mode is a result too: report it and go on.
        return {"mode": mode, "error": completed.stderr.strip().splitlines()[-1:] or
                [f"exit code {completed.returncode}"]}
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def print_report(results, args):
    first = next((r for r in results.values() if "error" not in r), None)
    if first is None:
        print("Every mode failed:", json.dumps(results, indent=1))
        return
    print()
    print(f"{args.preset} architecture, random weights, {first['resolution']} px, batch "
          f"{args.batch_size} + {args.batch_size} class, {args.precision}, "
          f"{first['backend']} on {first['device']}")
    print(f"{'mode':<10} {'s/step':>8} {'steps/s':>8} {'first steps s':>14} "
          f"{'peak GiB':>9} {'measured as':>16} {'trained M':>10} {'goal':>10}")
    for mode, result in results.items():
        if "error" in result:
            print(f"{mode:<10} failed: {result['error']}")
            continue
        goal = "-"
        if result["memory_kind"] != "host RSS" and result["resolution"] == ACCELERATOR_RESOLUTION:
            met = result["peak_gib"] <= GOAL_GIB[mode]
            goal = f"<={GOAL_GIB[mode]:.0f} {'met' if met else 'NOT met'}"
        print(f"{mode:<10} {result['seconds_per_step']:>8.3f} {result['steps_per_second']:>8.3f} "
              f"{result['warmup_seconds']:>14.1f} {result['peak_gib']:>9.2f} "
              f"{result['memory_kind']:>16} {result['trained_parameters'] / 1e6:>10.2f} {goal:>10}")
    if all(mode in results and "error" not in results[mode] for mode in ("full", "lora")):
        ratio = results["lora"]["peak_gib"] / results["full"]["peak_gib"]
        print(f"lora vs full: {ratio:.2f}x peak memory, "
              f"{results['lora']['steps_per_second'] / results['full']['steps_per_second']:.2f}x "
              "steps/s")


def run_mode(args):
    import keras
    import numpy as np

    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer
    from studio.trainers.settings.precision import backbone_policy

    lora = args.mode == "lora"
    lean = args.mode == "full-lean"
    keras.utils.set_random_seed(0)
    # LoRA: frozen networks in half precision under a mixed precision, as
    # `studio train dreambooth --lora-rank` loads them.
    backbone = build_random_backbone(args.preset, backbone_policy(args.precision, frozen=lora))
    device, memory_kind, peak_bytes = _memory_probe()
    resolution = args.resolution or (
        CPU_RESOLUTION if memory_kind == "host RSS" else ACCELERATOR_RESOLUTION
    )
    trainer = DreamBoothTrainer(
        backbone, prior_loss_weight=1.0, lora_rank=args.lora_rank if lora else None,
        remat=lean, seed=0,
    )
    rate = LORA_LEARNING_RATE if lora else FULL_LEARNING_RATE
    optimizer = (keras.optimizers.Adafactor(rate) if lean
                 else keras.optimizers.AdamW(rate, weight_decay=1e-2))
    # XLA on accelerators and under JAX; TensorFlow on a CPU runs a graph
    # without XLA (as `studio train` does there): XLA:CPU compiles for minutes.
    trainer.compile(optimizer=optimizer, jit_compile="auto")
    trained = sum(int(np.prod(v.shape)) for v in trainer.trainable_variables)

    size = resolution // backbone.vae_decoder.upsampling_factor
    channels = 2 * backbone.unet.latent_channels
    batch = 2 * args.batch_size
    rng = np.random.default_rng(0)
    width = backbone.text_encoder.hidden_dim
    inputs = {
        "moments": rng.standard_normal((batch, size, size, channels)).astype("float32"),
        # Precomputed text embeddings, as the command feeds a frozen encoder's.
        "context": rng.standard_normal(
            (batch, backbone.text_encoder.sequence_length, width)
        ).astype("float32"),
        "is_class_image": np.array([False] * args.batch_size + [True] * args.batch_size),
    }

    def step():
        logs = trainer.train_on_batch(x=inputs, return_dict=True)
        float(logs["step_loss"])

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    warmup_seconds = time.perf_counter() - start
    durations = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        durations.append(time.perf_counter() - start)
    seconds = statistics.median(durations)
    return {
        "mode": args.mode,
        "resolution": resolution,
        "backend": keras.config.backend(),
        "device": device,
        "seconds_per_step": seconds,
        "steps_per_second": 1.0 / seconds,
        "warmup_seconds": warmup_seconds,
        "peak_gib": peak_bytes() / GIB,
        "memory_kind": memory_kind,
        "rss_mib": current_rss_mib(),
        "trained_parameters": trained,
    }


def _memory_probe():
    """(device in words, what the peak measures, a function returning the peak in bytes)."""
    import keras

    if keras.config.backend() == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            stats = device.memory_stats
            return (f"{device.platform}: {device.device_kind}", "accelerator peak",
                    lambda: stats()["peak_bytes_in_use"])
    elif keras.config.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "gpu")
            return (f"gpu: {name}", "accelerator peak",
                    lambda: tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return ("cpu", "host RSS",
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


if __name__ == "__main__":
    sys.exit(main())
