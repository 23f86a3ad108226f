"""The GPU check's studio rows: training steps and generation under Keras' JAX backend.

Run only inside a worker process of `gpu_check.py`, which sets
`KERAS_BACKEND=jax` before anything imports Keras. Nothing here imports
TensorFlow, keras_cv or `studio.datasets`: batches are NumPy arrays (VAE
moments, token ids or text embeddings), as the latent cache would feed.
Only public constructors and methods of the trainers and the pipeline are
used (`compile`, `train_on_batch`, `__call__`).
"""

import os
import resource
import statistics
import time

import numpy as np

from gpu_check_scales import (
    ADAMW_WEIGHT_DECAY,
    FROZEN_BACKBONE_TASKS,
    FULL_LEARNING_RATE,
    GENERATION_PROMPT,
    GENERATION_SEED,
    GUIDANCE_SCALE,
    INITIALIZER,
    LORA_LEARNING_RATE,
    LORA_RANK,
    PLACEHOLDER,
    PRIOR_LOSS_WEIGHT,
    TI_LEARNING_RATE,
    TI_PROMPT,
    TRAIN_SEED,
    time_steps,
)

GIB = 1024**3


def run_rows(rows, scale, work_dir, emit):
    """Runs `rows` in order; a failing row is reported as an error and the next runs."""
    import keras

    if keras.config.backend() != "jax":
        raise RuntimeError(
            "The studio rows run under Keras' JAX backend. "
            f"Received: KERAS_BACKEND={keras.config.backend()!r}"
        )
    shared = {}
    for row in rows:
        try:
            result = _runner(row)(row, scale, work_dir, shared)
        except Exception as error:  # One row's failure (OOM, ...) is its result.
            result = {"error": f"{type(error).__name__}: {error}"[:400]}
        emit(row["id"], result)
        if row["kind"] == "train":
            keras.backend.clear_session()


def build_backbone(preset, policy, diffusers_numerics=False):
    """The preset's networks with random weights under `policy`, byte-level tokenizer.

    `from_preset(..., load_weights=False)` would still fetch CLIP's
    vocabulary; prompts of the right length are all a benchmark needs.
    With `diffusers_numerics` the networks compute with diffusers'
    epsilons and GELU, as a model imported from diffusers does, so that
    the exported copy computes the same function in PyTorch.
    """
    from studio.interop.diffusers_configs import diffusers_unet_numerics, diffusers_vae_numerics
    from studio.models import BACKBONE_PRESETS, COMPONENTS, StableDiffusionBackbone, network_classes
    from studio.tokenizers import CLIPTokenizer

    spec = BACKBONE_PRESETS[preset]
    numerics = {"text_encoder": {}, "unet": {}, "vae_encoder": {}, "vae_decoder": {}}
    if diffusers_numerics:
        numerics.update(
            unet=diffusers_unet_numerics(),
            vae_encoder=diffusers_vae_numerics(),
            vae_decoder=diffusers_vae_numerics(),
        )
    classes = network_classes()
    networks = {
        name: classes[spec[name]["class_name"]](
            name=name, dtype=policy, **spec[name]["config"], **numerics[name]
        )
        for name in COMPONENTS
    }
    return StableDiffusionBackbone(
        tokenizer=CLIPTokenizer.byte_level(),
        prediction_type=spec["prediction_type"],
        latent_scale=spec["latent_scale"],
        image_size=spec["image_size"],
        noise_schedule=spec["noise_schedule"],
        name=preset,
        **networks,
    )


# --- Training rows ---------------------------------------------------------


def training_policy(row):
    """The dtype policy a training row builds its backbone in: the trainers' `backbone_policy`.

    Textual inversion and LoRA train no weight of the backbone, so under a
    mixed precision its weights are stored in half precision, as the
    `studio train` commands load them; full fine-tuning keeps the mixed
    policy's float32 weights.
    """
    from studio.trainers.settings.precision import backbone_policy

    return backbone_policy(row["precision"], frozen=row["task"] in FROZEN_BACKBONE_TASKS)


def train_row(row, scale, work_dir, shared):
    task, batch_size = row["task"], row["batch"]
    start = time.perf_counter()
    backbone = build_backbone(scale.preset, training_policy(row))
    build_seconds = time.perf_counter() - start
    if task == "ti":
        trainer, batch = _textual_inversion(backbone, scale, batch_size)
    else:
        trainer, batch = _dreambooth(backbone, scale, batch_size, task)
    trained = int(sum(np.prod(v.shape) for v in trainer.trainable_variables))

    def step():
        logs = trainer.train_on_batch(x=batch, return_dict=True)
        return float(logs["step_loss"])  # Waits for the device.

    result = time_steps(step, scale.warmup_steps, scale.timed_steps)
    result.update(
        build_s=build_seconds,
        trained_parameters=trained,
        unet_batch=int(batch["moments"].shape[0]),
        **memory_peak(),
    )
    if task == "full":
        # Same UNet and batch for the lean row: the orchestrator reuses it.
        result.update(unet_step_flops(backbone.unet, batch["moments"].shape[0], scale))
    return result


def _textual_inversion(backbone, scale, batch_size):
    import keras

    from studio.trainers.textual_inversion.textual_inversion_trainer import (
        TextualInversionTrainer,
    )

    trainer = TextualInversionTrainer(backbone, PLACEHOLDER, INITIALIZER, seed=TRAIN_SEED)
    trainer.compile(optimizer=keras.optimizers.Adam(TI_LEARNING_RATE), jit_compile=True)
    batch = {
        "token_ids": backbone.tokenizer([TI_PROMPT] * batch_size),
        "moments": _moments(backbone, scale, batch_size),
    }
    return trainer, batch


def _dreambooth(backbone, scale, batch_size, task):
    import keras

    from studio.trainers.dreambooth.dreambooth_trainer import DreamBoothTrainer

    lora, lean = task == "lora", task == "full_lean"
    trainer = DreamBoothTrainer(
        backbone,
        prior_loss_weight=PRIOR_LOSS_WEIGHT,
        lora_rank=LORA_RANK if lora else None,
        remat=lean,
        seed=TRAIN_SEED,
    )
    if lean:
        optimizer = keras.optimizers.Adafactor(FULL_LEARNING_RATE)
    else:
        rate = LORA_LEARNING_RATE if lora else FULL_LEARNING_RATE
        optimizer = keras.optimizers.AdamW(rate, weight_decay=ADAMW_WEIGHT_DECAY)
    trainer.compile(optimizer=optimizer, jit_compile=True)
    # Prior preservation: `batch_size` subject examples and as many class
    # examples go through the UNet together; the text encoder is frozen, so
    # its output comes precomputed, as `studio train dreambooth` feeds it.
    examples = 2 * batch_size
    encoder = backbone.text_encoder
    rng = np.random.default_rng(TRAIN_SEED)
    batch = {
        "moments": _moments(backbone, scale, examples),
        "context": rng.standard_normal(
            (examples, encoder.sequence_length, encoder.hidden_dim)
        ).astype("float32"),
        "is_class_image": np.array([False] * batch_size + [True] * batch_size),
    }
    return trainer, batch


def _moments(backbone, scale, count):
    """Random VAE moments (mean, log-variance) as the latent cache stores them."""
    size = scale.resolution // backbone.vae_decoder.upsampling_factor
    channels = 2 * backbone.unet.latent_channels
    rng = np.random.default_rng(TRAIN_SEED + 1)
    moments = rng.standard_normal((count, size, size, channels)).astype("float32")
    moments[..., channels // 2 :] = -2.0  # A small, realistic log-variance.
    return moments


def memory_peak():
    """The accelerator's peak memory (JAX `memory_stats()`), else the process's peak RSS."""
    import jax

    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        # The peak counts whatever went through JAX's allocator, perhaps
        # XLA's autotuning trials at compile time too (the 2026-12-04 H200
        # run: 28.8 GiB for SD 1.x textual inversion at batch 1, not yet
        # explained). What is held after the steps and the largest single
        # allocation come beside it, to tell the step's memory from those.
        found = {"peak_gib": stats["peak_bytes_in_use"] / GIB, "memory_kind": "device peak"}
        for key, name in (("bytes_in_use", "in_use_gib"),
                          ("largest_alloc_size", "largest_alloc_gib")):
            if key in stats:
                found[name] = stats[key] / GIB
        return found
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_gib": peak / GIB, "memory_kind": "host RSS"}


def device_name():
    import jax

    device = jax.devices()[0]
    return f"{device.platform}: {device.device_kind}"


# --- FLOPs of the UNet's forward and backward pass -------------------------


def unet_step_flops(unet, batch, scale):
    """FLOPs of one forward and backward pass of `unet` (gradients of every weight).

    Traced with shapes only (no memory): XLA's cost analysis of the
    lowered step where JAX offers it, and a count of the matrix products
    and convolutions of the step's jaxpr (2 FLOPs per multiply-add), which
    checks it and stands in when XLA gives none.
    """
    import jax
    import jax.numpy as jnp

    size = scale.resolution // 8
    shapes = (
        [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in unet.trainable_variables],
        [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in unet.non_trainable_variables],
        jax.ShapeDtypeStruct((batch, size, size, unet.latent_channels), "float32"),
        jax.ShapeDtypeStruct((batch,), "int32"),
        jax.ShapeDtypeStruct((batch, 77, unet.context_dim), "float32"),
    )

    def loss(trainable, non_trainable, latents, timesteps, context):
        inputs = {"latents": latents, "timesteps": timesteps, "context": context}
        prediction, _ = unet.stateless_call(trainable, non_trainable, inputs)
        return jnp.mean(jnp.square(prediction.astype("float32") - latents))

    step = jax.jit(jax.value_and_grad(loss))
    result = {}
    traced = step.trace(*shapes) if hasattr(step, "trace") else None
    jaxpr = traced.jaxpr if traced is not None else jax.make_jaxpr(step)(*shapes)
    result["flops_counted"] = float(count_flops(jaxpr))
    try:
        lowered = traced.lower() if traced is not None else step.lower(*shapes)
        cost = lowered.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        result["flops_xla"] = float(cost["flops"])
    except Exception as error:  # Not every JAX version or platform offers it.
        result["flops_xla_error"] = f"{type(error).__name__}: {error}"[:200]
    result["flops"] = result.get("flops_xla") or result["flops_counted"]
    result["flops_source"] = "xla cost analysis" if "flops_xla" in result else "counted"
    return result


def count_flops(jaxpr):
    """2 x multiply-adds of every `dot_general` and `conv_general_dilated` in `jaxpr`."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0
    for equation in jaxpr.eqns:
        name = equation.primitive.name
        out_elements = int(np.prod(equation.outvars[0].aval.shape))
        if name == "dot_general":
            (contracting, _), _ = equation.params["dimension_numbers"]
            lhs = equation.invars[0].aval.shape
            total += 2 * out_elements * int(np.prod([lhs[d] for d in contracting]))
        elif name == "conv_general_dilated":
            rhs = equation.invars[1].aval.shape
            rhs_spec = equation.params["dimension_numbers"].rhs_spec
            # rhs_spec: (output feature dim, input feature dim, spatial dims...).
            taps = int(np.prod([rhs[d] for d in rhs_spec[2:]]))
            total += 2 * out_elements * rhs[rhs_spec[1]] * taps
        for value in equation.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += count_flops(inner)
    return total


# --- Generation and numerics rows ------------------------------------------


def _generation_setup(precision, scale, work_dir, shared):
    """The pipeline of `precision` (built once per worker) and its diffusers export."""
    if precision in shared:
        return shared[precision]
    from studio.interop import export_diffusers_folder
    from studio.pipelines import TextToImagePipeline

    # No `keras.utils.set_random_seed`: it imports TensorFlow where it is
    # installed. The weights need not repeat: diffusers gets a copy of them.
    start = time.perf_counter()
    backbone = build_backbone(scale.preset, precision, diffusers_numerics=True)
    build_seconds = time.perf_counter() - start
    folder = os.path.join(work_dir, f"diffusers-{precision}")
    start = time.perf_counter()
    # Half-precision weights for a half-precision comparison: what the
    # studio computes with (float32 variables cast to float16) is what
    # diffusers loads.
    export_diffusers_folder(
        backbone,
        folder,
        dtype="float16" if precision == "mixed_float16" else "float32",
        overwrite=True,
    )
    setup = {
        "pipeline": TextToImagePipeline(backbone, jit_compile=True),
        "backbone": backbone,
        "folder": folder,
        "build_s": build_seconds,
        "export_s": time.perf_counter() - start,
    }
    shared[precision] = setup
    return setup


def export_row(row, scale, work_dir, shared):
    """The numerics row's studio side: the same random weights written for diffusers."""
    setup = _generation_setup(row["precision"], scale, work_dir, shared)
    size = sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(setup["folder"])
        for name in names
    )
    return {"build_s": setup["build_s"], "export_s": setup["export_s"], "folder_gib": size / GIB}


def generate_row(row, scale, work_dir, shared):
    """Latency of a warmed-up generation and of the first (compiling) one; saves the images."""
    setup = _generation_setup(row["precision"], scale, work_dir, shared)
    pipeline, backbone = setup["pipeline"], setup["backbone"]
    prompts = [GENERATION_PROMPT] * row["batch"]

    def generate():
        return pipeline(
            prompts,
            num_steps=scale.generation_steps,
            guidance_scale=GUIDANCE_SCALE,
            seed=GENERATION_SEED,
            height=scale.resolution,
            width=scale.resolution,
            sampler="ddim",
        ).images

    start = time.perf_counter()
    images = generate()
    first = time.perf_counter() - start
    durations = []
    for _ in range(scale.generation_repeats):
        start = time.perf_counter()
        images = generate()
        durations.append(time.perf_counter() - start)
    # What the diffusers worker compares against: the images, and the
    # token ids the studio's tokenizer gave the prompts.
    np.savez(
        os.path.join(work_dir, f"studio-{row['precision']}-b{row['batch']}.npz"),
        images=images,
        token_ids=backbone.tokenizer(prompts),
        negative_token_ids=backbone.tokenizer([""] * len(prompts)),
        seed=GENERATION_SEED,
    )
    return {"first_s": first, "latency_s": statistics.median(durations), **memory_peak()}


RUNNERS = {"train": train_row, "generate": generate_row, "numerics": export_row}


def _runner(row):
    """The function of a row: SD 1.x's here, a newer family's in `gpu_check_studio_families`."""
    if row.get("family", "sd") != "sd":
        import gpu_check_studio_families

        return gpu_check_studio_families.RUNNERS[row["family"], row["kind"]]
    return RUNNERS[row["kind"]]
