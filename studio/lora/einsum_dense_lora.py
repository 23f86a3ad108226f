"""LoRA on a `keras.layers.EinsumDense` as on the plain matrix other tools see (CLIP's attention projections).

keras-hub's CLIP (SD3's CLIP-L and CLIP-G) projects queries, keys, values
and the attention output with Keras' `MultiHeadAttention`, whose
`EinsumDense` kernels keep the heads as an axis of their own:
`(hidden, heads, head_dim)` for q / k / v, `(heads, head_dim, hidden)` for
the output. Keras' own `EinsumDense.enable_lora` factors the kernel before
its last axis only (`lora_kernel_a` `kernel.shape[:-1] + (rank,)`), which
for q / k / v is one LoRA per head: no LoRA file of another tool holds
that. transformers (`self_attn.q_proj`), diffusers and kohya
(`lora_te1_..._self_attn_q_proj`) see one `(in, out)` matrix, `in` the
product of the kernel axes the input contracts, `out` the rest; this
adapter gives the layer a LoRA of that matrix,
`kernel + alpha / rank * reshape(a @ b)` with `a` `(in, rank)` and `b`
`(rank, out)`. It has the attributes `Dense`'s LoRA has
(`lora_enabled`, `lora_kernel_a`, `lora_kernel_b`, `lora_rank`,
`lora_alpha`, `enable_lora`, and `kernel` shaped `(in, out)`), so
`LoRAWeights` and the trainers treat both layers alike.

The matrices are variables of the layer (tracked, so a network's
`trainable_variables` and a checkpoint hold them); the adapter keeps no
state and can be made anew for a layer at any time. The layer's `call` is
replaced on the instance, as `rematerialize_mmdit_blocks` wraps blocks.
Saving the adapted layer with Keras (`save_weights`) stores its kernel
without the LoRA; the studio writes LoRA files instead.
"""

import math

import keras
from keras import ops

# The layer's attributes that hold the adapter's state.
_KERNEL_A = "studio_lora_kernel_a"
_KERNEL_B = "studio_lora_kernel_b"
_ALPHA = "studio_lora_alpha"


class EinsumDenseLoRA:
    """A view of an `EinsumDense` layer as one `(in, out)` matrix that takes LoRA like a `Dense`.

    Args:
        layer: a built `keras.layers.EinsumDense` without activation or
            quantization, whose kernel lists the axes the input contracts
            first (as `MultiHeadAttention`'s projections do).

    Raises:
        ValueError: for another layer.

    Example:

    ```python
    attention = clip.encoder_layers[0].attention
    query = EinsumDenseLoRA(attention._query_dense)
    query.enable_lora(4)  # query.lora_kernel_a: (hidden, 4), query.lora_kernel_b: (4, hidden)
    ```
    """

    def __init__(self, layer):
        if not isinstance(layer, keras.layers.EinsumDense) or not layer.built:
            raise ValueError(f"Expected a built keras.layers.EinsumDense. Received: {layer!r}")
        inputs, kernel = layer.equation.split("->")[0].split(",")
        contracted = [axis in inputs for axis in kernel]
        split = contracted.count(True)
        if contracted != [True] * split + [False] * (len(kernel) - split):
            raise ValueError(
                "EinsumDenseLoRA needs the kernel's contracted axes first (as "
                f"MultiHeadAttention's projections). Received: equation {layer.equation!r}"
            )
        linear = layer.activation in (None, keras.activations.linear)
        if not linear or layer.quantization_mode is not None:
            raise ValueError(
                "EinsumDenseLoRA adapts a linear, unquantized layer. Received: "
                f"{layer.name!r} with activation {layer.activation!r}, "
                f"quantization {layer.quantization_mode!r}"
            )
        self.layer = layer
        shape = tuple(layer._kernel.shape)
        self.kernel_shape = (math.prod(shape[:split]), math.prod(shape[split:]))

    @property
    def name(self):
        return self.layer.name

    @property
    def kernel(self):
        """The layer's kernel as the `(in, out)` matrix (without LoRA)."""
        return ops.reshape(self.layer._kernel, self.kernel_shape)

    @property
    def dtype_policy(self):
        return self.layer.dtype_policy

    @property
    def lora_enabled(self):
        return getattr(self.layer, _KERNEL_A, None) is not None

    @property
    def lora_kernel_a(self):
        return getattr(self.layer, _KERNEL_A)

    @property
    def lora_kernel_b(self):
        return getattr(self.layer, _KERNEL_B)

    @property
    def lora_rank(self):
        return int(self.lora_kernel_a.shape[1])

    @property
    def lora_alpha(self):
        return getattr(self.layer, _ALPHA)

    @lora_alpha.setter
    def lora_alpha(self, value):
        # A plain float: the next trace of `call` reads it.
        object.__setattr__(self.layer, _ALPHA, float(value))

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Adds float32 `a` `(in, rank)` and `b` `(rank, out)` to the layer and freezes its kernel.

        Args:
            rank: int >= 1.
            lora_alpha: float or None (= rank); the LoRA's output scales by
                `lora_alpha / rank`.
            a_initializer, b_initializer: Keras initializers (`b` zero:
                the layer's output is unchanged until training).

        Raises:
            ValueError: LoRA is already enabled (by this adapter or Keras').
        """
        layer = self.layer
        if self.lora_enabled or layer.lora_enabled:
            raise ValueError(f"LoRA is already enabled on {layer.name!r}; enable it once.")
        fan_in, fan_out = self.kernel_shape
        # Keras' own `enable_lora` opens the built layer's tracker the same
        # way to add its matrices.
        layer._tracker.unlock()
        try:
            kernel_a = layer.add_weight(
                name="lora_kernel_a", shape=(fan_in, rank), dtype="float32",
                initializer=keras.initializers.get(a_initializer),
            )  # fmt: skip
            kernel_b = layer.add_weight(
                name="lora_kernel_b", shape=(rank, fan_out), dtype="float32",
                initializer=keras.initializers.get(b_initializer),
            )  # fmt: skip
            setattr(layer, _KERNEL_A, kernel_a)
            setattr(layer, _KERNEL_B, kernel_b)
        finally:
            layer._tracker.lock()
        layer._kernel.trainable = False
        self.lora_alpha = rank if lora_alpha is None else lora_alpha
        # An instance attribute shadows the class's `call`.
        layer.call = _adapted_call(layer)


def _adapted_call(layer):
    """`EinsumDense.call` with the kernel plus the flat LoRA's update (read at each trace)."""

    def call(inputs, training=None):
        kernel_a, kernel_b = getattr(layer, _KERNEL_A), getattr(layer, _KERNEL_B)
        scale = getattr(layer, _ALPHA) / kernel_a.shape[1]
        update = ops.reshape(ops.matmul(kernel_a, kernel_b), layer._kernel.shape)
        kernel = ops.cast(ops.add(layer._kernel, scale * update), layer.compute_dtype)
        outputs = ops.einsum(layer.equation, inputs, kernel)
        if layer.bias is not None:
            outputs = ops.add(outputs, layer.bias)
        return outputs

    return call
