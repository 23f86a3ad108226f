"""The UNet's convolution: one matmul on tiny images, Winograd when asked."""

import keras
from keras import ops

from studio.models.winograd_convolution import (
    winograd_convolution,
    winograd_enabled,
    winograd_tile,
)


@keras.saving.register_keras_serializable(package="studio")
class UNetConv2D(keras.layers.Conv2D):
    """A `keras.layers.Conv2D` that convolves tiny images as one matmul.

    When the output has at most `MATMUL_MAX_PIXELS` pixels (the UNet's
    1x1 to 4x4 levels at 64-128 px training images), a "valid" convolution
    of any stride, or a stride-1 "same" one, is computed as im2col: one
    strided slice of the (padded) image per kernel tap, side by side, times
    the kernel as a `(taps * in_channels, out_channels)` matrix. Same
    result to float rounding; its gradients (the input's and, when it
    trains, the kernel's) are matmuls too.

    Written our own way for speed: at those sizes the backend's kernels
    are slow on the CPU. TensorFlow's oneDNN input gradient takes 30-62 ms
    for SD's 1280- and 2560-channel 3x3 layers at 1x1 to 4x4 pixels,
    against 1.5-13 ms forward + backward as a matmul, which reads the
    kernel once in its stored layout; in bfloat16 its forward convolution
    takes 12-60 ms against 2-9 ms. Taps that see only padding are left
    out: a 3x3 "same" convolution of a 1x1 image is one `in x out` matmul
    with the kernel's centre. From 8x8 up the backend's convolution is the
    faster one and is used.

    Inside `winograd_convolutions()` (the generation pipeline's sampling
    loop and latent decoder on a CPU), a stride-1 3x3 "same" convolution
    larger than that is computed with Winograd's F(4x4) or F(2x2) where the
    measured rule (`winograd_tile`) says it is faster: up to 2x on 2 cores,
    equal to float rounding of about 1e-5 of the output's range.

    Args and call arguments: `keras.layers.Conv2D`'s.
    """

    # The largest output (height * width) computed as a matmul (measured:
    # 4x4 is faster as a matmul, 8x8 as a convolution).
    MATMUL_MAX_PIXELS = 16

    def uses_matmul(self, inputs):
        """True when `inputs` (a tensor or shape) is convolved as one matmul."""
        shape = tuple(getattr(inputs, "shape", inputs))
        height, width = shape[1], shape[2]
        if (
            self.data_format != "channels_last"
            or tuple(self.dilation_rate) != (1, 1)
            or self.groups != 1
            or height is None
            or width is None
        ):
            return False
        if self.padding == "same":
            # TensorFlow pads a strided "same" convolution unevenly; only
            # stride 1 with odd kernels is written here.
            if tuple(self.strides) != (1, 1) or not all(k % 2 for k in self.kernel_size):
                return False
        elif self.padding != "valid":
            return False
        top, left = _padding(self.kernel_size, self.padding)
        output_height, output_width = _output_size(
            (height + 2 * top, width + 2 * left), self.kernel_size, self.strides
        )
        return 0 < output_height * output_width <= self.MATMUL_MAX_PIXELS

    def winograd_tile(self, inputs, kernel):
        """Winograd's output tile (2 or 4) for this call, or None (see `winograd_tile`)."""
        if (
            not winograd_enabled()
            or self.data_format != "channels_last"
            or self.padding != "same"
            or tuple(self.strides) != (1, 1)
            or tuple(self.dilation_rate) != (1, 1)
            or self.groups != 1
            or self.uses_matmul(inputs)
        ):
            return None
        return winograd_tile(tuple(inputs.shape), tuple(kernel.shape), inputs.dtype)

    def convolution_op(self, inputs, kernel):
        if self.uses_matmul(inputs):
            return _matmul_convolution(inputs, kernel, tuple(self.strides), self.padding)
        tile = self.winograd_tile(inputs, kernel)
        if tile is not None:
            return winograd_convolution(inputs, ops.cast(kernel, inputs.dtype), tile)
        return super().convolution_op(inputs, kernel)


def _padding(kernel_size, padding):
    """Zero rows and columns added on each side: `(top, left)` (also bottom, right)."""
    if padding == "valid":
        return 0, 0
    return kernel_size[0] // 2, kernel_size[1] // 2


def _output_size(padded, kernel_size, strides):
    return tuple(
        (size - kernel) // stride + 1 for size, kernel, stride in zip(padded, kernel_size, strides)
    )


def _matmul_convolution(images, kernel, strides, padding):
    """A convolution as one matmul over the kernel taps that reach the image (im2col).

    Args:
        images: `(batch, height, width, in_channels)`.
        kernel: `(kernel_height, kernel_width, in_channels, out_channels)`.
        strides: `(stride_y, stride_x)`.
        padding: `"valid"`, or `"same"` (stride 1, odd kernel sizes).

    Returns:
        `(batch, output_height, output_width, out_channels)`.
    """
    height, width = images.shape[1], images.shape[2]
    kernel_height, kernel_width, in_channels, out_channels = kernel.shape
    top, left = _padding((kernel_height, kernel_width), padding)
    if top or left:
        images = ops.pad(images, ((0, 0), (top, top), (left, left), (0, 0)))
    output_height, output_width = _output_size(
        (images.shape[1], images.shape[2]), (kernel_height, kernel_width), strides
    )
    rows = _reaching_taps(kernel_height, strides[0], output_height, top, height)
    columns = _reaching_taps(kernel_width, strides[1], output_width, left, width)
    # Output pixel (y, x) sees padded pixel (stride * y + row, stride * x +
    # column) through a tap: one strided slice of the image per tap, side
    # by side along the channels, meets the kernel's rows in the same order.
    patches = [
        images[
            :,
            row : row + strides[0] * (output_height - 1) + 1 : strides[0],
            column : column + strides[1] * (output_width - 1) + 1 : strides[1],
            :,
        ]
        for row in rows
        for column in columns
    ]
    patches = patches[0] if len(patches) == 1 else ops.concatenate(patches, axis=-1)
    # The reaching taps are a contiguous block of the kernel.
    if len(rows) < kernel_height or len(columns) < kernel_width:
        kernel = kernel[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    taps = len(rows) * len(columns)
    outputs = ops.matmul(
        ops.reshape(patches, (-1, taps * in_channels)),
        ops.reshape(kernel, (taps * in_channels, out_channels)),
    )
    return ops.reshape(outputs, (-1, output_height, output_width, out_channels))


def _reaching_taps(kernel_size, stride, output_size, pad, image_size):
    """The taps of one axis that see at least one real (not padding) pixel."""
    return [
        tap
        for tap in range(kernel_size)
        if any(pad <= tap + stride * index < pad + image_size for index in range(output_size))
    ]
