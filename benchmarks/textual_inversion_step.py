"""Benchmark: one textual-inversion training step, the studio's against the keras.io recipe.

Both variants train one placeholder vector of the full-size SD 1.x networks
(random weights: `from_preset("sd-v1", load_weights=False)`'s
architecture) at a small resolution, on the same machine, each in a fresh
subprocess so that peak memory (`ru_maxrss`) is the variant's own:

* `studio`: `studio.trainers.TextualInversionTrainer` as `studio train`
  runs it: VAE moments from the latent cache (no VAE call in the step),
  gradients and Adam state of shape (1, 768), the UNet's convolutions
  with outputs of 1x1 to 4x4 pixels computed as matmuls (`UNetConv2D`),
  the step compiled with `jit_compile="auto"` (XLA on
  GPUs; on a CPU-only TensorFlow machine a graph without XLA, whose oneDNN
  convolutions XLA:CPU does not match).
* `keras_io`: a re-implementation of the keras.io example "Teach
  StableDiffusion new concepts via Textual Inversion" (Ian Stenbit,
  lukewood): the VAE encodes the images every step, the whole token
  embedding table (49408 x 768) is the trainable variable, its
  IndexedSlices gradient is zeroed except for the placeholder's row, Adam
  (weight decay 0.004, global clipnorm 10) updates the whole table, the
  UNet's convolutions are TensorFlow's at every size (KerasCV's UNet has
  plain `Conv2D` layers), and the step is a `tf.function` without XLA
  (Keras' default on CPU).

Both in float32: the headline pair. `--with-bf16` adds the pair under
`mixed_bfloat16`: `studio-bf16` as `studio train --precision
mixed_bfloat16` runs it (the frozen networks stored in bfloat16), and
`keras_io-bf16`, the recipe under Keras' `mixed_bfloat16` policy (float32
weights, as the recipe trains its table). `--with-xla` adds the studio
step forced through XLA, `--with-jax` the same trainer under Keras' JAX
backend (jit-compiled by XLA). `--rounds N` runs every variant N times,
alternating the order, and reports the median over all timed steps: the
CPU machine's speed drifts by up to 2x over minutes (shared host), which
one pass in a fixed order turns into a skewed ratio.

The tokenizer is the byte-level one (no download): prompts have the same
77 positions either way. Usage:

    python benchmarks/textual_inversion_step.py [--resolution 128] [--steps 4] [--with-bf16] [--rounds 2]

It prints each variant's seconds per step (median over the timed steps;
the first steps, which trace and compile, are timed apart), peak memory,
and the ratios. The goal: >= 3x the reference's steps per second, and less
peak memory.

What bounds the ratio on a CPU: both steps spend most of their time in the
UNet's backward pass to the text context, which no recipe can skip. The
studio's step saves the VAE encoder and the table's update around it, and
`UNetConv2D` replaces TensorFlow's slow CPU convolution kernels on the
1x1-4x4 levels; what remains is reading every frozen weight twice (forward
and backward), which `mixed_bfloat16`'s half-precision storage halves.
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

REFERENCE = "keras_io"
# Variant -> (compile mode of the studio step, precision as `--precision`).
STUDIO_VARIANTS = {
    "studio": ("auto", "float32"),
    "studio-xla": (True, "float32"),
    "studio-bf16": ("auto", "mixed_bfloat16"),
    "studio-jax": ("auto", "float32"),
}
# Reference variant -> dtype policy of its networks.
REFERENCE_VARIANTS = {REFERENCE: "float32", "keras_io-bf16": "mixed_bfloat16"}
# Each studio variant's reference: the recipe at the same precision.
PAIRS = {"studio": REFERENCE, "studio-bf16": "keras_io-bf16"}
# Variant -> Keras backend of its process (the others run on TensorFlow).
BACKENDS = {"studio-jax": "jax"}
VARIANTS = tuple(STUDIO_VARIANTS) + tuple(REFERENCE_VARIANTS)
GOAL_SPEEDUP = 3.0
RESULT_PREFIX = "RESULT "
PLACEHOLDER = "<benchmark-token>"
INITIALIZER = "cat"
PROMPT = "a photo of a " + PLACEHOLDER
# The keras.io recipe's optimizer settings.
KERAS_IO_LEARNING_RATE = 1e-4
KERAS_IO_WEIGHT_DECAY = 0.004
KERAS_IO_EPSILON = 1e-8
KERAS_IO_GLOBAL_CLIPNORM = 10.0
STUDIO_LEARNING_RATE = 5e-3
KIB = 1024


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="sd-v1", help="architecture (default: sd-v1)")
    parser.add_argument("--resolution", type=int, default=128, help="image size (default: 128)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per step (default: 1)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed first steps: tracing and compiling (default: 2)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps (default: 4)")
    parser.add_argument("--with-xla", action="store_true",
                        help="also time the studio step forced through XLA")
    parser.add_argument("--with-jax", action="store_true",
                        help="also time the studio step under the JAX backend (jit, XLA)")
    parser.add_argument("--with-bf16", action="store_true",
                        help="also time both steps under mixed_bfloat16")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of every variant, in alternating order (default: 1)")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.variant:
        result = run_variant(args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0
    variants = ["studio", REFERENCE]
    variants += ["studio-bf16", "keras_io-bf16"] if args.with_bf16 else []
    variants += ["studio-xla"] if args.with_xla else []
    variants += ["studio-jax"] if args.with_jax else []
    runs = {variant: [] for variant in variants}
    for round_index in range(args.rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for variant in order:
            print(f"Round {round_index + 1}/{args.rounds}: {variant} in a fresh process ...",
                  flush=True)
            runs[variant].append(run_in_subprocess(variant, args))
    print_report({variant: combine(results) for variant, results in runs.items()}, args)
    return 0


def combine(results):
    """One variant's runs as one result: the median step over all runs, the largest peak."""
    steps = [seconds for result in results for seconds in result["step_seconds"]]
    seconds = statistics.median(steps)
    combined = dict(results[0])
    combined.update(
        seconds_per_step=seconds,
        steps_per_second=1.0 / seconds,
        step_seconds=steps,
        round_seconds_per_step=[result["seconds_per_step"] for result in results],
        warmup_seconds=statistics.median(result["warmup_seconds"] for result in results),
        peak_rss_mib=max(result["peak_rss_mib"] for result in results),
        rss_after_build_mib=max(result["rss_after_build_mib"] for result in results),
    )
    return combined


def run_in_subprocess(variant, args):
    command = [
        sys.executable, os.path.abspath(__file__), "--variant", variant,
        "--preset", args.preset, "--resolution", str(args.resolution),
        "--batch-size", str(args.batch_size), "--warmup", str(args.warmup),
        "--steps", str(args.steps),
    ]
    # The reference is TensorFlow code (tf.GradientTape, IndexedSlices), so
    # it and the headline `studio` row run on TensorFlow, like for like;
    # `studio-jax` is the same trainer on the backend a user may pick instead.
    env = dict(os.environ, KERAS_BACKEND=BACKENDS.get(variant, "tensorflow"),
               TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"The {variant} variant failed (exit code {completed.returncode}):\n"
            + completed.stderr[-4000:]
        )
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def print_report(results, args):
    print()
    print(f"{args.preset} architecture, random weights, {args.resolution} px, "
          f"batch {args.batch_size}, {results['studio']['device']}, {args.rounds} round(s)")
    header = f"{'variant':<14} {'s/step':>8} {'steps/s':>8} {'first steps s':>14} " \
             f"{'peak RSS MiB':>13} {'over weights MiB':>17}  per-round s/step"
    print(header)
    for name, result in results.items():
        rounds = ", ".join(f"{value:.3f}" for value in result["round_seconds_per_step"])
        print(f"{name:<14} {result['seconds_per_step']:>8.3f} {result['steps_per_second']:>8.3f} "
              f"{result['warmup_seconds']:>14.1f} {result['peak_rss_mib']:>13.0f} "
              f"{result['peak_rss_mib'] - result['rss_after_build_mib']:>17.0f}  {rounds}")
    for name, reference_name in PAIRS.items():
        if name not in results:
            continue
        studio, reference = results[name], results[reference_name]
        speedup = studio["steps_per_second"] / reference["steps_per_second"]
        memory = studio["peak_rss_mib"] / reference["peak_rss_mib"]
        print(f"{name} vs {reference_name}: {speedup:.2f}x steps/s (goal >= "
              f"{GOAL_SPEEDUP:.0f}x: {'met' if speedup >= GOAL_SPEEDUP else 'NOT met'}); "
              f"peak memory {memory:.2f}x ({'less' if memory < 1 else 'NOT less'})")
    reference = results[REFERENCE]
    for name in results:
        if name not in PAIRS and name not in REFERENCE_VARIANTS:
            ratio = results[name]["steps_per_second"] / reference["steps_per_second"]
            print(f"{name} vs {REFERENCE}: {ratio:.2f}x steps/s")


def run_variant(args):
    import keras

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    if args.variant in REFERENCE_VARIANTS:
        policy = REFERENCE_VARIANTS[args.variant]
    else:
        from studio.trainers.settings.precision import frozen_network_policy

        # As `studio train textual-inversion` builds it: under mixed
        # precision the frozen networks are stored in the compute dtype.
        policy = frozen_network_policy(STUDIO_VARIANTS[args.variant][1])
    backbone = build_random_backbone(args.preset, policy)
    build_seconds = time.perf_counter() - start
    rss_after_build = current_rss_mib()
    make_step = keras_io_step if args.variant in REFERENCE_VARIANTS else studio_step
    step = make_step(backbone, args)

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
        "variant": args.variant,
        "seconds_per_step": seconds,
        "steps_per_second": 1.0 / seconds,
        "step_seconds": durations,
        "warmup_seconds": warmup_seconds,
        "build_seconds": build_seconds,
        "rss_after_build_mib": rss_after_build,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB,
        "device": _device(),
    }


def studio_step(backbone, args):
    """The studio's trainer on cached VAE moments, compiled as `args.variant` says."""
    import keras
    import numpy as np

    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer
    from studio.trainers.warmup_schedule import WarmupSchedule

    trainer = TextualInversionTrainer(backbone, PLACEHOLDER, INITIALIZER, seed=0)
    jit_compile = STUDIO_VARIANTS[args.variant][0]
    trainer.compile(
        optimizer=keras.optimizers.Adam(WarmupSchedule(STUDIO_LEARNING_RATE)),
        jit_compile=jit_compile,
    )
    size = args.resolution // backbone.vae_decoder.upsampling_factor
    channels = 2 * backbone.unet.latent_channels
    rng = np.random.default_rng(0)
    batch = {
        "token_ids": backbone.tokenizer([PROMPT] * args.batch_size),
        "moments": rng.standard_normal((args.batch_size, size, size, channels)).astype("float32"),
    }

    def step():
        trainer.train_on_batch(x=batch, return_dict=True)

    return step


def keras_io_step(backbone, args):
    """The keras.io recipe's train step (see the module docstring)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from studio.models.unet_conv2d import UNetConv2D
    from studio.schedulers import NoiseSchedule

    # KerasCV's UNet, the recipe's, has plain `keras.layers.Conv2D` layers:
    # the backend's own convolution at every image size.
    UNetConv2D.MATMUL_MAX_PIXELS = 0
    tokenizer = backbone.tokenizer
    placeholder_id = tokenizer.add_placeholder_tokens(PLACEHOLDER)[0]
    text_encoder, unet, vae_encoder = backbone.text_encoder, backbone.unet, backbone.vae_encoder
    # The recipe initialises the new row from the initializer's embedding.
    table = text_encoder.token_embedding.embeddings
    initial = table.numpy()[tokenizer.tokenize_words(INITIALIZER)].mean(axis=0)
    table.assign(tf.tensor_scatter_nd_update(table, [[placeholder_id]], [initial]))
    # Only the token embedding trains; the rest of the encoder, the UNet
    # and the VAE are frozen.
    unet.trainable = False
    vae_encoder.trainable = False
    for layer in text_encoder.layers:
        layer.trainable = layer is text_encoder.token_embedding
    variables = text_encoder.trainable_weights
    assert [tuple(v.shape) for v in variables] == [tuple(table.shape)]

    schedule = NoiseSchedule(**backbone.noise_schedule, prediction_type=backbone.prediction_type)
    optimizer = keras.optimizers.Adam(
        learning_rate=KERAS_IO_LEARNING_RATE,
        weight_decay=KERAS_IO_WEIGHT_DECAY,
        epsilon=KERAS_IO_EPSILON,
        global_clipnorm=KERAS_IO_GLOBAL_CLIPNORM,
    )
    optimizer.build(variables)
    latent_scale = backbone.latent_scale

    @tf.function(jit_compile=False)
    def train_step(images, token_ids):
        with tf.GradientTape() as tape:
            moments = tf.cast(vae_encoder(images, training=False), tf.float32)
            mean, log_variance = tf.split(moments, 2, axis=-1)
            log_variance = tf.clip_by_value(log_variance, -30.0, 20.0)
            latents = mean + tf.exp(0.5 * log_variance) * tf.random.normal(tf.shape(mean))
            latents = latents * latent_scale
            noise = tf.random.normal(tf.shape(latents))
            timesteps = tf.random.uniform(
                (tf.shape(latents)[0],), 0, schedule.num_train_timesteps, dtype=tf.int32
            )
            noisy = schedule.add_noise(latents, noise, timesteps)
            context = text_encoder(token_ids, training=False)
            prediction = unet(
                {"latents": noisy, "timesteps": timesteps, "context": context}, training=False
            )
            loss = tf.reduce_mean(tf.square(tf.cast(prediction, tf.float32) - noise))
        gradients = tape.gradient(loss, variables)
        # The recipe's trick: zero every row's gradient but the placeholder's.
        rows = gradients[0]
        keep = tf.expand_dims(tf.equal(rows.indices, placeholder_id), -1)
        gradients[0] = tf.IndexedSlices(
            tf.where(keep, rows.values, tf.zeros_like(rows.values)), rows.indices, rows.dense_shape
        )
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    rng = np.random.default_rng(0)
    images = rng.uniform(
        -1.0, 1.0, (args.batch_size, args.resolution, args.resolution, 3)
    ).astype("float32")
    token_ids = tokenizer([PROMPT] * args.batch_size)

    def step():
        float(train_step(images, token_ids))

    return step


def _device():
    from studio.trainers.run.training_run import describe_device

    return describe_device()


if __name__ == "__main__":
    sys.exit(main())
