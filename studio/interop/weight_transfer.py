"""Moves weights between our Keras layers and PyTorch state-dict tensors.

A name table (`unet_names`, `vae_names`, `text_encoder_names`) lists rows
`(keras_path, torch_name, kind)`: where the Keras layer is, the PyTorch
module's name, and how its tensors are laid out. This module knows the
layouts:

  * `CONV`: `weight` [out, in, kh, kw] (Keras Conv2D: [kh, kw, in, out]),
    `bias`. A 1x1 convolution may stand for one of our Dense layers.
  * `LINEAR`: `weight` [out, in] (Keras Dense: [in, out]), `bias` if any.
    A Linear may stand for one of our 1x1 Conv2D layers (diffusers' VAE
    attention projections, which the original model has as 1x1 convs).
  * `NORM`: `weight` and `bias` (Keras: `gamma` and `beta`).
  * `EMBEDDING`: `weight` [rows, width] (Keras: `embeddings`).
  * `PARAMETER`: the tensor named `torch_name` itself is the layer's only
    weight (OpenCLIP's `positional_embedding`).
  * `MATRIX`: the tensor named `torch_name` is a bias-free Dense layer's
    kernel as Keras stores it, [in, out] (OpenCLIP's `text_projection`,
    applied as `x @ text_projection`).
  * `FUSED_QKV`: `in_proj_weight` [3 * width, width] and `in_proj_bias`,
    query, key and value stacked (`torch.nn.MultiheadAttention`), for a
    `CLIPEncoderLayer`'s three projections.

Keras paths are dotted: the first part is a layer name of the functional
model (`model.get_layer`), the rest attributes or list indices
(`"down0_attention0.transformer_blocks.0.norm1"`).
"""

import numpy as np

from studio.interop.checkpoint_format_error import CheckpointFormatError
from studio.interop.checkpoint_reader import quote_names

CONV = "conv"
LINEAR = "linear"
NORM = "norm"
EMBEDDING = "embedding"
PARAMETER = "parameter"
FUSED_QKV = "fused_qkv"
MATRIX = "matrix"
KINDS = (CONV, LINEAR, NORM, EMBEDDING, PARAMETER, FUSED_QKV, MATRIX)


class _Slot:
    """One PyTorch tensor and the Keras variable(s) it corresponds to."""

    __slots__ = ("key", "shape", "read", "write")

    def __init__(self, key, shape, read, write):
        self.key = key
        self.shape = tuple(int(size) for size in shape)
        self.read = read  # () -> numpy array in PyTorch's layout.
        self.write = write  # (numpy array in PyTorch's layout) -> None.


def load_torch_weights(network, names, tensors, source):
    """Assigns state-dict tensors to `network`'s weights, as `names` maps them.

    Every shape is checked before any value is read, so a mismatch costs
    nothing. Values are converted to float32 one tensor at a time, and each
    loaded entry is removed from `tensors`: the PyTorch reader caches the
    bytes it read until its tensor is dropped, so a multi-gigabyte file is
    never held whole.

    Args:
        network: a Keras model of `studio.models`.
        names: rows `(keras_path, torch_name, kind)`.
        tensors: dict name -> `StoredTensor` (or numpy array); the used
            entries are removed.
        source: what the tensors come from, for messages.

    Returns:
        The set of tensor names used.

    Raises:
        CheckpointFormatError: a tensor is missing or has another shape.
    """
    slots = _slots(network, names)
    missing = [slot.key for slot in slots if slot.key not in tensors]
    if missing:
        raise CheckpointFormatError(
            f"{source} lacks {len(missing)} of the {len(slots)} tensors of the "
            f"{network.name} (is it a complete Stable Diffusion model?). "
            f"Missing: {quote_names(missing)}"
        )
    for slot in slots:
        shape = tuple(tensors[slot.key].shape)
        if shape != slot.shape:
            raise CheckpointFormatError(
                f"{source}: tensor {slot.key!r} does not fit the {network.name} "
                f"inferred from the other tensors: expected shape {slot.shape}. "
                f"Received: shape {shape}"
            )
    for slot in slots:
        stored = tensors.pop(slot.key)
        values = stored.numpy() if hasattr(stored, "numpy") else stored
        slot.write(np.asarray(values, dtype="float32"))
    return {slot.key for slot in slots}


def torch_weights(network, names):
    """Lists `network`'s weights as PyTorch tensors, read on demand.

    Args:
        network: a Keras model of `studio.models`.
        names: rows `(keras_path, torch_name, kind)`.

    Returns:
        A list of `(torch_key, shape, read)`; `read()` returns the values
        as a float32 numpy array in PyTorch's layout.
    """
    return [(slot.key, slot.shape, slot.read) for slot in _slots(network, names)]


def find_layer(network, path):
    """The layer at dotted `path` (see the module docstring)."""
    first, *rest = path.split(".")
    layer = network.get_layer(first)
    for part in rest:
        layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
    return layer


def _slots(network, names):
    slots = []
    for keras_path, torch_name, kind in names:
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
        slots.extend(_LAYOUTS[kind](find_layer(network, keras_path), torch_name))
    return slots


def _numpy(variable):
    return np.array(variable.numpy() if hasattr(variable, "numpy") else variable, "float32")


def _kernel_to_torch(kernel, kind):
    """Keras kernel ([kh, kw, in, out] or [in, out]) -> PyTorch weight."""
    weight = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
    if kind == LINEAR and weight.ndim == 4:
        return weight[:, :, 0, 0]
    if kind == CONV and weight.ndim == 2:
        return weight[:, :, None, None]
    return weight


def _kernel_shape_to_torch(kernel_shape, kind):
    """The shape `_kernel_to_torch` gives, without any values."""
    if len(kernel_shape) == 4:
        height, width, inputs, outputs = kernel_shape
        return (outputs, inputs) if kind == LINEAR else (outputs, inputs, height, width)
    inputs, outputs = kernel_shape
    return (outputs, inputs, 1, 1) if kind == CONV else (outputs, inputs)


def _kernel_from_torch(weight, kernel_shape):
    """PyTorch weight ([out, in, kh, kw] or [out, in]) -> Keras kernel."""
    if weight.ndim == 4 and len(kernel_shape) == 2:
        weight = weight[:, :, 0, 0]
    elif weight.ndim == 2 and len(kernel_shape) == 4:
        weight = weight[:, :, None, None]
    return weight.transpose(2, 3, 1, 0) if weight.ndim == 4 else weight.T


def _assigner(variable):
    def write(values):
        variable.assign(values.reshape(variable.shape))

    return write


def _projection_slots(layer, name, kind):
    # With LoRA enabled (`Dense.enable_lora`), `layer.kernel` is the merged
    # kernel: what an exported model must hold.
    kernel_shape = tuple(layer.kernel.shape)
    if kind == LINEAR and len(kernel_shape) == 4 and kernel_shape[:2] != (1, 1):
        raise ValueError(
            f"Only a 1x1 convolution can stand for a Linear layer. Received: "
            f"{layer.name} with kernel shape {kernel_shape}"
        )

    def write_kernel(weight):
        if getattr(layer, "lora_enabled", False):
            raise ValueError(
                f"Weights cannot be loaded into a layer with LoRA enabled. Received: {layer.name}"
            )
        layer.kernel.assign(_kernel_from_torch(weight, kernel_shape))

    slots = [
        _Slot(
            f"{name}.weight",
            _kernel_shape_to_torch(kernel_shape, kind),
            lambda: _kernel_to_torch(_numpy(layer.kernel), kind),
            write_kernel,
        )
    ]
    if layer.bias is not None:
        slots.append(
            _Slot(
                f"{name}.bias", layer.bias.shape, lambda: _numpy(layer.bias), _assigner(layer.bias)
            )
        )
    return slots


def _norm_slots(layer, name):
    return [
        _Slot(
            f"{name}.weight", layer.gamma.shape, lambda: _numpy(layer.gamma), _assigner(layer.gamma)
        ),
        _Slot(f"{name}.bias", layer.beta.shape, lambda: _numpy(layer.beta), _assigner(layer.beta)),
    ]


def _embedding_slots(layer, name, key_suffix=".weight"):
    table = layer.embeddings

    return [_Slot(f"{name}{key_suffix}", table.shape, lambda: _numpy(table), _assigner(table))]


def _matrix_slots(layer, name):
    kernel = layer.kernel
    return [_Slot(name, kernel.shape, lambda: _numpy(kernel), _assigner(kernel))]


def _fused_qkv_slots(layer, name):
    projections = (layer.query_dense, layer.key_dense, layer.value_dense)
    width = layer.hidden_dim

    def read_weight():
        return np.concatenate([_numpy(p.kernel).T for p in projections], axis=0)

    def write_weight(weight):
        for index, projection in enumerate(projections):
            projection.kernel.assign(weight[index * width : (index + 1) * width].T)

    def read_bias():
        return np.concatenate([_numpy(p.bias) for p in projections], axis=0)

    def write_bias(bias):
        for index, projection in enumerate(projections):
            projection.bias.assign(bias[index * width : (index + 1) * width])

    return [
        _Slot(f"{name}.in_proj_weight", (3 * width, width), read_weight, write_weight),
        _Slot(f"{name}.in_proj_bias", (3 * width,), read_bias, write_bias),
    ]


_LAYOUTS = {
    CONV: lambda layer, name: _projection_slots(layer, name, CONV),
    LINEAR: lambda layer, name: _projection_slots(layer, name, LINEAR),
    NORM: _norm_slots,
    EMBEDDING: _embedding_slots,
    PARAMETER: lambda layer, name: _embedding_slots(layer, name, key_suffix=""),
    FUSED_QKV: _fused_qkv_slots,
    MATRIX: _matrix_slots,
}
