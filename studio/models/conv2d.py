"""`UNetConv2D` under Keras' own class name, for the layers of functional models."""

import keras

from studio.models.unet_conv2d import UNetConv2D


@keras.saving.register_keras_serializable(package="studio")
class Conv2D(UNetConv2D):
    """A `UNetConv2D` (matmul on tiny images, Winograd where asked) named `Conv2D`.

    Keras' weight files key the layers of a functional model by their class
    name (`layers/conv2d_3/vars`), not by the layer's name. The VAE
    decoder's own convolutions were `keras.layers.Conv2D` when its weight
    files were written (the shipped `tiny-shapes`, every saved preset
    folder); under this class name they load from those files unchanged.
    Layers held as attributes (`UNetConv2D` in the residual blocks) are
    keyed by the attribute and need no such care.

    Args and call arguments: `keras.layers.Conv2D`'s.
    """
