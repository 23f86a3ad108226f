"""The devices a training command splits each global batch across (`--devices N`)."""

import contextlib
import logging
import os

from studio.errors import InvalidInputError

# The commands' option, named in the messages.
OPTION = "--devices"
# The XLA flag that also sets JAX's number of CPU devices (before JAX starts).
JAX_CPU_DEVICES_FLAG = "--xla_force_host_platform_device_count"

logger = logging.getLogger(__name__)


class DataParallelDevices:
    """Data-parallel training on `num_devices` devices, with the engine Keras supports.

    TensorFlow: a `tf.distribute.MirroredStrategy` over the devices; the
    backbone, the trainer and its optimizer must be built and compiled in
    `scope()`, and `fit` then splits each global batch across the replicas
    (`dataset()` makes a seeded `tf.data` pipeline repeat under it). JAX: `setup()` sets `keras.distribution.DataParallel` over the devices
    for the whole process, before anything is built; variables are
    replicated and each global batch is sharded along its first axis.
    Either way one step equals a single-device step on the global batch
    (see `replica_context`), which must split evenly (`split_batch`).

    Devices: the first `num_devices` GPUs (or TPUs under JAX). A machine
    without accelerators gets its CPU split into `num_devices` logical
    devices: a testing aid, no faster than one device, as they share the
    cores. Both frameworks fix their devices when they start, so `setup()`
    must come before anything uses them (the commands call it first); a
    CPU that can no longer be split is an error. Under JAX,
    `XLA_FLAGS=--xla_force_host_platform_device_count=N` set before Python
    starts also works.

    `num_devices=1` changes nothing: no strategy, no distribution, an
    empty scope.

    Args:
        num_devices: int >= 1.

    Raises:
        ValueError: `num_devices` below 1.

    Example:

    ```python
    devices = DataParallelDevices(2).setup()
    with devices.scope():
        backbone = StableDiffusionBackbone.from_preset("sd-v1")
        trainer = TextualInversionTrainer(backbone, "<cat-toy>", "toy")
        trainer.compile(optimizer=keras.optimizers.Adam(5e-3),
                        jit_compile=devices.jit_compile("auto"))
    batches = devices.dataset(lambda: concept_dataset.build(batch_size=8, seed=0))
    trainer.fit(batches, steps_per_epoch=100)  # 8 images a step: 4 per device
    ```
    """

    def __init__(self, num_devices=1):
        if isinstance(num_devices, bool) or not isinstance(num_devices, int) or num_devices < 1:
            raise InvalidInputError(f"{OPTION} must be an integer >= 1. Received: {num_devices!r}")
        self.num_devices = num_devices
        self.device_names = None
        self._kind = None
        self._strategy = None

    @property
    def is_data_parallel(self):
        return self.num_devices > 1

    def setup(self):
        """Finds (or makes) the devices and sets up the backend's engine; returns self.

        Raises:
            ValueError: the machine has fewer devices, a backend without a
                data-parallel engine here, or a CPU that cannot be split
                any more.
        """
        if not self.is_data_parallel or self.device_names is not None:
            return self
        # Imported here: the commands check their settings (`split_batch`)
        # before anything loads Keras.
        import keras

        backend = keras.config.backend()
        if backend == "tensorflow":
            self._setup_tensorflow()
        elif backend == "jax":
            self._setup_jax()
        else:
            raise InvalidInputError(
                f"{OPTION} above 1 needs the TensorFlow or JAX backend. Set KERAS_BACKEND "
                f"to tensorflow or jax, or leave {OPTION} out. Received: {OPTION} "
                f"{self.num_devices} with KERAS_BACKEND={backend}"
            )
        return self

    def scope(self):
        """Where the backbone, trainer and optimizer are built and compiled.

        The strategy's scope under TensorFlow; an empty one otherwise (JAX's
        distribution is set by `setup`).
        """
        if self._strategy is not None:
            return self._strategy.scope()
        return contextlib.nullcontext()

    def jit_compile(self, requested):
        """The `jit_compile` for `compile`: `requested`, but False under a MirroredStrategy.

        Keras compiles the whole multi-replica TensorFlow step, which XLA
        cannot (its replicas' variables live on other devices), and turns
        XLA off itself for `jit_compile="auto"`.
        """
        return False if self._strategy is not None else requested

    def dataset(self, build, rebuildable=True):
        """The training batches `build()` returns, as `fit` should get them.

        Under a MirroredStrategy, and under JAX on any number of devices,
        Keras reads a first batch through an iterator of its own before
        training, and a pipeline with random state (the studio's datasets
        reshuffle on each pass, from a seed generator that all iterators of
        one dataset share) would then train on another order, which depends
        on how far that iterator's prefetching ran: under JAX a race, so
        `--devices 2` and one device trained on different batches whenever
        the order mattered (images with their own captions). So there the
        pipeline is built inside a `flat_map`, afresh for each pass: every
        pass, and so the training, gets the batches a single-device
        TensorFlow run gets. Elsewhere: `build()` itself.

        Args:
            build: callable returning a `tf.data.Dataset`, traceable when
                `rebuildable` (numpy arrays and tf ops; no Keras models).
            rebuildable: False for a pipeline that creates variables (such
                as keras_cv augmentation layers), which a `flat_map` cannot:
                it is used as it is, with a warning that the run's data
                order will not repeat.
        """
        if self._strategy is None and not _rebuilds_per_iterator():
            return build()
        if not rebuildable:
            if self._strategy is None:
                return build()
            logger.warning(
                "Data parallel under TensorFlow, this run's data order and augmentations "
                "will not repeat exactly (a resumed or repeated run sees other batches). "
                "Training with the latent cache (--latent-variants above 0) repeats."
            )
            return build()
        import tensorflow as tf

        return tf.data.Dataset.from_tensors(0).flat_map(lambda _: build())

    def check_gradient_accumulation(self, steps):
        """Raises when Keras cannot accumulate `steps` batches' gradients on these devices.

        Keras' optimizer accumulates inside a conditional, where a
        MirroredStrategy cannot sum the replicas' gradients.

        Raises:
            ValueError: `steps` above 1 under a MirroredStrategy.
        """
        if steps > 1 and self._strategy is not None:
            raise InvalidInputError(
                f"Under TensorFlow, gradient accumulation cannot be combined with {OPTION}: "
                f"Keras' optimizer cannot sum the devices' gradients inside its accumulation "
                f"step. Raise --batch-size instead (it is split across the devices), or use "
                f"KERAS_BACKEND=jax. Received: --grad-accum {steps} and {OPTION} "
                f"{self.num_devices}"
            )

    def split_batch(self, global_batch, source):
        """Examples per device of a global batch; `source` names it in the message.

        Raises:
            ValueError: the batch does not split evenly across the devices.
        """
        if global_batch % self.num_devices:
            raise InvalidInputError(
                f"Each step's batch is split evenly across the devices, so it must be a "
                f"multiple of {OPTION}. Choose a batch size that {self.num_devices} divides. "
                f"Received: {OPTION} {self.num_devices} and a batch of {global_batch} ({source})"
            )
        return global_batch // self.num_devices

    def describe(self):
        """The devices in words, e.g. "2 GPUs" or "2 logical CPU devices (a testing aid ...)"."""
        if not self.is_data_parallel:
            return "1 device"
        if self._kind is None:
            return f"{self.num_devices} devices"
        text = f"{self.num_devices} {self._kind}s"
        if self._kind == "logical CPU device":
            text += " (a testing aid: they share the CPU's cores, so it is no faster)"
        return text

    def get_config(self):
        return {"num_devices": self.num_devices}

    # --- Backends -----------------------------------------------------------

    def _setup_tensorflow(self):
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            if len(gpus) < self.num_devices:
                raise self._too_few(len(gpus), "GPU")
            self._kind = "GPU"
            names = [f"/gpu:{index}" for index in range(self.num_devices)]
        else:
            self._split_tensorflow_cpu(tf)
            self._kind = "logical CPU device"
            names = [f"/cpu:{index}" for index in range(self.num_devices)]
        self._strategy = tf.distribute.MirroredStrategy(names)
        self.device_names = names

    def _split_tensorflow_cpu(self, tf):
        cpu = tf.config.list_physical_devices("CPU")[0]
        configured = tf.config.get_logical_device_configuration(cpu) or []
        if len(configured) < self.num_devices:
            try:
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration()] * self.num_devices
                )
            except RuntimeError:
                pass  # TensorFlow has started: its devices are fixed. Counted below.
        available = len(tf.config.list_logical_devices("CPU"))
        if available < self.num_devices:
            raise InvalidInputError(
                f"TensorFlow had started before the CPU could be split into "
                f"{self.num_devices} logical devices (it fixes its devices when it starts). "
                f"Run the command in a new process, before anything uses TensorFlow. "
                f"Received: {OPTION} {self.num_devices}; this machine has {available} CPU "
                f"device{'s' if available > 1 else ''} and no GPU"
            )

    def _setup_jax(self):
        import jax
        import keras

        flags = os.environ.get("XLA_FLAGS", "")
        if jax.config.jax_num_cpu_devices < 0 and JAX_CPU_DEVICES_FLAG not in flags:
            # Only the CPU platform's device count; GPUs and TPUs are as they are.
            try:
                jax.config.update("jax_num_cpu_devices", self.num_devices)
            except RuntimeError:
                pass  # JAX has started: its devices are fixed. Counted below.
        devices = jax.devices()
        platform = devices[0].platform
        if len(devices) < self.num_devices:
            if platform == "cpu":
                raise InvalidInputError(
                    f"JAX had started before the CPU could be split into {self.num_devices} "
                    f"logical devices. Run the command in a new process, or set "
                    f"XLA_FLAGS={JAX_CPU_DEVICES_FLAG}={self.num_devices} before Python starts. "
                    f"Received: {OPTION} {self.num_devices}; this machine has {len(devices)} "
                    f"CPU device{'s' if len(devices) > 1 else ''} and no accelerator"
                )
            raise self._too_few(len(devices), platform.upper())
        self._kind = "logical CPU device" if platform == "cpu" else platform.upper()
        names = [f"{device.platform}:{device.id}" for device in devices[: self.num_devices]]
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=names))
        self.device_names = names

    def _too_few(self, available, kind):
        return ValueError(
            f"{OPTION} asks for more devices than this machine has: data-parallel training "
            f"runs one copy of the model per device. Give {OPTION} {available} or less (or "
            f"leave it out for one), or run on a machine with {self.num_devices} {kind}s. "
            f"Received: {OPTION} {self.num_devices}; this machine has {available} "
            f"{kind}{'s' if available > 1 else ''}"
        )


def _rebuilds_per_iterator():
    """True under JAX, whose `fit` reads a batch from an iterator of its own
    first (and prefetches on it) before the training iterator starts."""
    import keras

    return keras.config.backend() == "jax"
