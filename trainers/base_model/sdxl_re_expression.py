"""`re_express_in_sdxl`: a Stable Diffusion backbone's weights as the start of an SDXL backbone.

`tiny-shapes-xl` starts here: tiny-shapes' trained networks poured into
SDXL's wiring, so that a short adaptation (`pretrain_sdxl_shapes_model`)
rather than a pretraining from scratch makes it draw the shapes world.

What carries over, and how:

- Each text encoder gets the source encoder's layers, and one more last
  layer started as the identity (its attention and MLP output projections
  zero): SDXL reads the penultimate states, which are then the source's
  last states before its final norm, and the pooled vector is the source's
  final-normed end-token state (through an identity `text_projection` where
  the widths allow).
- The UNet gets every weight of the source UNet. 1x1 convolution
  projections become SDXL's dense ones; the cross-attention key and value
  kernels, which now read both encoders' states side by side, are split
  evenly across them (each encoder's half of the rows is the source kernel
  divided by the number of encoders), so that equal states give the
  source's keys and values and both encoders contribute. The added
  conditioning (pooled text + size ids) starts silent: its output layer is
  zero.

The only change of function left is the final norm that SDXL's penultimate
states go without (and the numerics the target's configuration chooses);
the adaptation run learns it away.
"""

import numpy as np

# The source UNet's 1x1 convolution kernels (1, 1, in, out) become dense
# kernels (in, out).
_CONV_1X1_PREFIX = (1, 1)


def re_express_in_sdxl(source, target):
    """Copies `source`'s weights into `target` (in place); returns `target`.

    Args:
        source: a `StableDiffusionBackbone` (SD family).
        target: an `SDXLBackbone` whose encoders have the source encoder's
            sizes and one layer more, whose UNet has the source UNet's sizes
            with a context of both encoders' widths, and whose VAE has the
            source VAE's sizes.

    Raises:
        ValueError: networks whose sizes do not correspond.
    """
    for encoder in (target.text_encoder, target.text_encoder_2):
        _re_express_text_encoder(source.text_encoder, encoder)
    _re_express_unet(source.unet, target.unet, num_encoders=2)
    for name in ("vae_encoder", "vae_decoder"):
        _copy_layer(getattr(source, name), getattr(target, name), name)
    return target


def _re_express_text_encoder(source, target):
    if target.num_layers != source.num_layers + 1:
        raise ValueError(
            "The SDXL encoder must have one layer more than the source encoder (SDXL reads "
            "the penultimate layer). Received: source num_layers="
            f"{source.num_layers}, target num_layers={target.num_layers}"
        )
    _copy_layer(source.token_embedding, target.token_embedding, "token_embedding")
    _copy_layer(source.position_embedding, target.position_embedding, "position_embedding")
    for index, layer in enumerate(source.encoder_layers):
        _copy_layer(layer, target.encoder_layers[index], layer.name)
    last = target.encoder_layers[-1]
    _copy_layer(source.encoder_layers[-1], last, last.name)
    # Residual branches that add nothing: the last layer passes its input on.
    for dense in (last.output_dense, last.mlp_output_dense):
        for variable in dense.weights:
            variable.assign(np.zeros(variable.shape, variable.dtype))
    _copy_layer(source.final_layer_norm, target.final_layer_norm, "final_layer_norm")
    projection = target.text_projection
    if projection is not None and projection.kernel.shape[0] == projection.kernel.shape[1]:
        projection.kernel.assign(np.eye(projection.kernel.shape[0], dtype="float32"))


def _re_express_unet(source, target, num_encoders):
    names = [layer.name for layer in source.layers if layer.weights]
    for name in names:
        _copy_layer(source.get_layer(name), target.get_layer(name), name,
                    context_dims=(source.context_dim, target.context_dim),
                    num_encoders=num_encoders)
    added = target.get_layer("added_conditioning")
    for variable in added.dense_out.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))


def _copy_layer(source, target, label, context_dims=None, num_encoders=1):
    source_weights, target_weights = source.weights, target.weights
    if len(source_weights) != len(target_weights):
        raise ValueError(
            f"The layers '{label}' do not correspond: {len(source_weights)} weights in the "
            f"source, {len(target_weights)} in the target."
        )
    for from_variable, to_variable in zip(source_weights, target_weights):
        value = _converted(np.asarray(from_variable.numpy()), tuple(to_variable.shape),
                           context_dims, num_encoders)
        if value is None:
            raise ValueError(
                f"A weight of '{label}' has no counterpart: source {from_variable.path} "
                f"{tuple(from_variable.shape)}, target {to_variable.path} "
                f"{tuple(to_variable.shape)}."
            )
        to_variable.assign(value.astype(to_variable.dtype))


def _converted(value, shape, context_dims, num_encoders):
    """The source value in the target's shape, or None when there is no rule."""
    if value.shape == shape:
        return value
    if value.shape[:2] == _CONV_1X1_PREFIX and value.shape[2:] == shape:
        return value.reshape(shape)
    if (
        context_dims is not None
        and value.ndim == 2
        and value.shape[0] == context_dims[0]
        and shape == (context_dims[1], value.shape[1])
        and context_dims[1] == num_encoders * context_dims[0]
    ):
        return np.concatenate([value / num_encoders] * num_encoders, axis=0)
    return None
