"""3x3 convolutions with Winograd's minimal filtering, for generation on a CPU.

A stride-1 3x3 "same" convolution computed as Winograd's F(m x m, 3 x 3)
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
2015): the image is cut into overlapping (m + 2)-pixel tiles, each tile and
each filter go through a small linear transform, the products are
`(m + 2) ** 2` batched matmuls over the channels, and a last transform
gives m x m output pixels per tile. F(4x4, 3x3) does 4x fewer
multiplications than the direct convolution, F(2x2, 3x3) 2.25x fewer.

Written our own way for speed: on a CPU both TensorFlow's (oneDNN) and
PyTorch's direct float32 convolutions already run at the cores' matmul
peak (about 230 GFLOP/s on the project's 2 cores), so doing fewer
multiplications is the one way left to generate faster. GPUs pick their
own algorithms (cuDNN has Winograd); this path is for CPUs only.

The result differs from the direct convolution by float rounding: about
1e-5 of the output's largest value for F(4x4), 2e-6 for F(2x2), against
about 1e-7 between two direct implementations. That is why it is used
only where a caller asks for it (`winograd_convolutions()`, which the
generation pipeline enters on a CPU in float32) and never in training.

Measured on 2 cores (forward, float32, filter transform included),
direct convolution -> Winograd:

| backend | shape (batch, px, in -> out) | direct | F(4x4) | F(2x2) |
|---|---|---|---|---|
| TensorFlow | 2, 32x32, 320 -> 320 | 17.7 ms | 12.5 ms | 16.2 ms |
| TensorFlow | 2, 16x16, 640 -> 640 | 18.3 ms | 14.5 ms | 15.4 ms |
| TensorFlow | 2, 8x8, 1280 -> 1280 | 37.8 ms | 31.5 ms | 19.0 ms |
| TensorFlow | 8, 16x16, 640 -> 640 | 63.7 ms | 30.0 ms | 42.7 ms |
| TensorFlow | 8, 8x8, 1280 -> 1280 | 81.8 ms | 46.8 ms | 43.8 ms |
| TensorFlow | 1, 256x256, 128 -> 128 | 91.5 ms | 79.2 ms | 118.1 ms |
| JAX | 2, 32x32, 320 -> 320 | 23.3 ms | 9.4 ms | 12.5 ms |
| JAX | 2, 16x16, 640 -> 640 | 19.6 ms | 36.6 ms | 14.6 ms |
| JAX | 8, 8x8, 1280 -> 1280 | 114.9 ms | 132.7 ms | 90.3 ms |
| JAX | 1, 256x256, 128 -> 128 | 106.7 ms | 141.7 ms | 196.4 ms |

`winograd_tile` turns these into a rule per backend. TensorFlow runs
`_winograd_tensorflow`, large graph ops without XLA; JAX runs
`_winograd` (many small ops that XLA fuses) as its own program or inside
the caller's.
"""

import contextlib
import contextvars

import keras
import numpy as np
from keras import ops

# Transform matrices (input B^T, filter G, output A^T) per output tile size
# m, with interpolation points 0, +-1 (m = 2) and 0, +-1, +-2 (m = 4).
_TRANSFORMS = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}
OUTPUT_TILES = tuple(_TRANSFORMS)

# Narrower convolutions (the tiny test models, a UNet's 4-channel ends)
# are cheap either way and gain nothing.
MIN_CHANNELS = 128
# XLA:CPU's transforms are slower: under JAX, fewer input channels than
# this stay direct (SD's VAE decoder at 128 channels and 256 px lost 1.3x).
JAX_MIN_CHANNELS = 256

_ENABLED = contextvars.ContextVar("studio_winograd_convolutions", default=False)
# The backend's implementation, made once per process (`_implementation`).
_IMPLEMENTATIONS = {}


@contextlib.contextmanager
def winograd_convolutions(enabled=True):
    """Within the block, `UNetConv2D` layers traced or run use Winograd where it is faster.

    The choice is made when a layer's call is traced, so a compiled
    function keeps the setting it was traced with: enter the block inside
    the compiled model's `call` (as `SamplingLoop` and `LatentDecoder` do).
    """
    token = _ENABLED.set(bool(enabled))
    try:
        yield
    finally:
        _ENABLED.reset(token)


def winograd_enabled():
    """True inside `winograd_convolutions()`."""
    return _ENABLED.get()


def winograd_tile(input_shape, kernel_shape, dtype, backend=None):
    """The output tile (2 or 4) for a stride-1 3x3 "same" convolution, or None.

    None when the sizes are not known when traced, the channels are fewer
    than `MIN_CHANNELS`, the computation is not float32, or the measured
    rule for the backend says the direct convolution is faster.
    """
    backend = backend or keras.backend.backend()
    batch, height, width = input_shape[0], input_shape[1], input_shape[2]
    if height is None or width is None or tuple(kernel_shape[:2]) != (3, 3):
        return None
    if min(kernel_shape[2], kernel_shape[3]) < MIN_CHANNELS:
        return None
    if keras.backend.standardize_dtype(dtype) != "float32":
        return None
    if backend == "tensorflow":
        # F(4x4) from 16x16 up; below, its filter transform (4x the
        # kernel) costs more than it saves (see the module's table).
        return 4 if min(height, width) >= 16 else 2
    if backend == "jax":
        # XLA:CPU runs the transforms more slowly: F(4x4) from 2048 output
        # pixels, F(2x2) below, nothing for 128-channel images of 256 px.
        if kernel_shape[2] < JAX_MIN_CHANNELS:
            return None
        # An unknown batch counts as one image.
        return 4 if (batch or 1) * height * width >= 2048 else 2
    return None


def winograd_convolution(images, kernel, output_tile):
    """`images` (NHWC) convolved with a 3x3 `kernel` (HWIO), stride 1, "same" padding.

    Args:
        images: `(batch, height, width, in_channels)`, static height and width.
        kernel: `(3, 3, in_channels, out_channels)`.
        output_tile: 2 or 4, the `m` of F(m x m, 3 x 3).

    Returns:
        `(batch, height, width, out_channels)`, no bias.
    """
    if output_tile not in _TRANSFORMS:
        raise ValueError(f"output_tile must be one of {OUTPUT_TILES}, got {output_tile}")
    return _implementation()(images, kernel, output_tile)


def _implementation():
    """The backend's implementation (see the module's docstring)."""
    backend = keras.backend.backend()
    if backend not in _IMPLEMENTATIONS:
        if backend == "tensorflow":
            _IMPLEMENTATIONS[backend] = _winograd_tensorflow
        elif backend == "jax":
            import jax

            # Its own program when called eagerly; inlined into a caller's.
            _IMPLEMENTATIONS[backend] = jax.jit(_winograd, static_argnums=2)
        else:
            _IMPLEMENTATIONS[backend] = _winograd
    return _IMPLEMENTATIONS[backend]


def _kron(matrix):
    """The 2-D transform `M X M^T` of flattened tiles, as one matrix."""
    matrix = np.asarray(matrix, "float32")
    return np.kron(matrix, matrix)


def _filters(kernel, output_tile):
    """The transformed filters, `(tile * tile, in, out)`: one matmul over the 9 taps."""
    tile = output_tile + 2
    filters = ops.matmul(
        ops.convert_to_tensor(_kron(_TRANSFORMS[output_tile][1]), dtype=kernel.dtype),
        ops.reshape(kernel, (9, -1)),
    )
    return ops.reshape(filters, (tile * tile, kernel.shape[2], kernel.shape[3]))


def _padded(images, output_tile):
    """One "same" pixel of padding, then enough for whole tiles; and the tile counts."""
    height, width = images.shape[1], images.shape[2]
    rows, columns = -(-height // output_tile), -(-width // output_tile)
    padded = ops.pad(
        images,
        (
            (0, 0),
            (1, rows * output_tile - height + 1),
            (1, columns * output_tile - width + 1),
            (0, 0),
        ),
    )
    return padded, rows, columns


def _winograd_tensorflow(images, kernel, output_tile):
    """TensorFlow's graph ops, without XLA (nothing to compile per shape).

    The tiles come out of `tf.image.extract_patches` and each transform is
    one matmul over a tile's flattened pixels, a handful of large ops
    instead of `_winograd`'s many small ones, which unfused cost more than
    the multiplications saved (about as fast as `_winograd` under XLA:
    13.0 against 9.6 ms at batch 2, 32x32, 320 channels; 34.4 against
    33.4 ms at batch 8, 16x16, 640; and no compilation, which made a first
    256 px generation 16 s slower).
    """
    import tensorflow as tf

    input_transform, _, output_transform = _TRANSFORMS[output_tile]
    tile = output_tile + 2
    batch = tf.shape(images)[0]
    height, width, in_channels = images.shape[1], images.shape[2], images.shape[3]
    out_channels = kernel.shape[3]
    filters = _filters(kernel, output_tile)
    padded, rows, columns = _padded(images, output_tile)
    tiles = tf.image.extract_patches(
        padded,
        sizes=[1, tile, tile, 1],
        strides=[1, output_tile, output_tile, 1],
        rates=[1, 1, 1, 1],
        padding="VALID",
    )
    # (batch, rows, columns, tile * tile * in) -> (tile * tile, tiles * in)
    tiles = tf.transpose(tf.reshape(tiles, (-1, tile * tile, in_channels)), (1, 0, 2))
    transformed = tf.matmul(_kron(input_transform), tf.reshape(tiles, (tile * tile, -1)))
    transformed = tf.reshape(transformed, (tile * tile, -1, in_channels))

    products = tf.matmul(transformed, filters)
    pixels = tf.matmul(_kron(output_transform), tf.reshape(products, (tile * tile, -1)))
    pixels = tf.reshape(
        pixels, (output_tile, output_tile, batch, rows, columns, out_channels)
    )
    pixels = tf.transpose(pixels, (2, 3, 0, 4, 1, 5))
    pixels = tf.reshape(
        pixels, (batch, rows * output_tile, columns * output_tile, out_channels)
    )
    return pixels[:, :height, :width]


def _combine(terms, matrix):
    """Rows of `matrix` times the list `terms`: sums of tensors with small factors."""
    combined = []
    for row in matrix:
        total = None
        for factor, term in zip(row, terms):
            if factor == 0:
                continue
            scaled = term if factor == 1 else -term if factor == -1 else term * factor
            total = scaled if total is None else total + scaled
        combined.append(total)
    return combined


def _winograd(images, kernel, output_tile):
    input_transform, _, output_transform = _TRANSFORMS[output_tile]
    tile = output_tile + 2
    batch = ops.shape(images)[0]
    height, width, in_channels = images.shape[1], images.shape[2], images.shape[3]
    out_channels = kernel.shape[3]
    filters = _filters(kernel, output_tile)
    padded, rows, columns = _padded(images, output_tile)

    # Tile (i, j) starts at pixel (m * i, m * j); one strided slice per
    # offset in the tile, transformed along the rows, then the columns.
    row_span = (rows - 1) * output_tile + 1
    column_span = (columns - 1) * output_tile + 1
    by_row = _combine(
        [padded[:, offset : offset + row_span : output_tile] for offset in range(tile)],
        input_transform,
    )
    transformed = []
    for part in by_row:
        transformed += _combine(
            [part[:, :, offset : offset + column_span : output_tile] for offset in range(tile)],
            input_transform,
        )
    transformed = ops.reshape(ops.stack(transformed), (tile * tile, -1, in_channels))

    products = ops.matmul(transformed, filters)
    products = ops.reshape(products, (tile, tile, batch, rows, columns, out_channels))

    # Back to pixels: output row r of a tile from the products' rows, then
    # columns; interleave the m x m pixels of every tile.
    pixel_rows = []
    for part in _combine([products[index] for index in range(tile)], output_transform):
        pixel_rows.append(
            ops.stack(_combine([part[index] for index in range(tile)], output_transform), axis=3)
        )
    outputs = ops.stack(pixel_rows, axis=2)
    outputs = ops.reshape(
        outputs, (batch, rows * output_tile, columns * output_tile, out_channels)
    )
    return outputs[:, :height, :width]


def winograd_by_default(compute_dtype):
    """True when computing in float32 on a CPU: where `winograd_convolutions()` pays."""
    if keras.backend.standardize_dtype(compute_dtype) != "float32":
        return False
    devices = keras.distribution.list_devices()
    return bool(devices) and devices[0].lower().startswith("cpu")
