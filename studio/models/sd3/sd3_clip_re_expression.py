"""`re_express_clip_in_sd3`: a studio CLIP text encoder as keras-hub's SD3 CLIP-L and CLIP-G.

`tiny-shapes-sd3` conditions its MMDiT on tiny-shapes' trained text
encoder, poured into keras-hub's `CLIPTextEncoder` twice (CLIP-L and
CLIP-G), as `sdxl_re_expression` does for SD-XL:

- each keras-hub encoder gets the source's token and position tables and
  its layers one to one (the studio's q / k / v / output `Dense` kernels
  are keras-hub's `MultiHeadAttention` kernels reshaped by head), and one
  more last layer started as the identity (its attention and MLP output
  projections zero): SD3 reads the penultimate states, which are then the
  source's last states before its final norm;
- the pooled vector is the source's final-normed end-token state: keras-hub's
  `clip_{l,g}_projection` kernels are the identity.

The encoders stay frozen in `tiny-shapes-sd3` (as SD3's CLIP encoders are),
so the preset re-expresses tiny-shapes' shipped file when it loads instead
of shipping copies. keras-hub's final norm has epsilon 1e-6 against the
studio's 1e-5, which changes the pooled vector by about 1e-5.
"""

import numpy as np

# keras-hub's SD3 text encoders (`SD3Backbone.TEXT_ENCODERS`; not imported
# from there, which imports this module when it loads a packaged preset).
TEXT_ENCODERS = ("clip_l", "clip_g")


def re_express_clip_in_sd3(source, hub_backbone):
    """Copies `source`'s weights into both CLIP encoders of `hub_backbone` (in place).

    Args:
        source: a studio `CLIPTextEncoder` (tiny-shapes' `text_encoder`).
        hub_backbone: a `keras_hub.models.StableDiffusion3Backbone` whose
            `clip_l` and `clip_g` have the source's widths, vocabulary and
            sequence length, one layer more, and read their intermediate
            output at the penultimate layer.

    Returns:
        `hub_backbone`.

    Raises:
        ValueError: encoders whose sizes do not correspond.
    """
    for name in TEXT_ENCODERS:
        _re_express_encoder(source, getattr(hub_backbone, name), name)
        kernel = getattr(hub_backbone, f"{name}_projection").dense.kernel
        kernel.assign(np.eye(kernel.shape[0], dtype=kernel.dtype))
    return hub_backbone


def _re_express_encoder(source, target, label):
    expected = {
        "num_layers": source.num_layers + 1,
        "hidden_dim": source.hidden_dim,
        "num_heads": source.num_heads,
        "intermediate_dim": source.intermediate_dim,
        "vocabulary_size": source.vocabulary_size,
        "max_sequence_length": source.sequence_length,
        # SD3 reads the penultimate layer: the source's last one.
        "intermediate_output_index": source.num_layers - 1,
    }
    found = {key: getattr(target, key) for key in expected}
    if found != expected:
        raise ValueError(
            f"keras-hub's {label} must have the source encoder's sizes and one layer more, "
            f"read at its penultimate layer. Expected: {expected}. Received: {found}"
        )
    _assign(target.embedding.token_embedding.embeddings, source.token_embedding.embeddings)
    _assign(target.embedding.position_embedding.position_embeddings,
            source.position_embedding.embeddings)
    for index, block in enumerate(target.encoder_layers):
        # The extra last layer starts from the source's last one.
        _copy_block(source.encoder_layers[min(index, source.num_layers - 1)], block)
    last = target.encoder_layers[-1]
    # Residual branches that add nothing: the last layer passes its input on.
    for dense in (last.attention._output_dense, last.dense_2):
        for variable in dense.weights:
            variable.assign(np.zeros(variable.shape, variable.dtype))
    _copy_norm(source.final_layer_norm, target.layer_norm)


def _copy_block(source, target):
    heads, head_dim, hidden = source.num_heads, source.head_dim, source.hidden_dim
    _copy_norm(source.attention_layer_norm, target.layer_norm_1)
    attention = target.attention
    for studio_dense, hub_dense in (
        (source.query_dense, attention._query_dense),
        (source.key_dense, attention._key_dense),
        (source.value_dense, attention._value_dense),
    ):
        # (hidden, hidden) -> (hidden, heads, head_dim): the studio splits
        # heads off the last axis, as MultiHeadAttention's einsum does.
        _assign(hub_dense.kernel, _numpy(studio_dense.kernel).reshape(hidden, heads, head_dim))
        _assign(hub_dense.bias, _numpy(studio_dense.bias).reshape(heads, head_dim))
    output = attention._output_dense
    _assign(output.kernel, _numpy(source.output_dense.kernel).reshape(heads, head_dim, hidden))
    _assign(output.bias, source.output_dense.bias)
    _copy_norm(source.mlp_layer_norm, target.layer_norm_2)
    for studio_dense, hub_dense in (
        (source.intermediate_dense, target.dense_1),
        (source.mlp_output_dense, target.dense_2),
    ):
        _assign(hub_dense.kernel, studio_dense.kernel)
        _assign(hub_dense.bias, studio_dense.bias)


def _copy_norm(source, target):
    _assign(target.gamma, source.gamma)
    _assign(target.beta, source.beta)


def _numpy(variable):
    return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)


def _assign(target, value):
    value = _numpy(value)
    if tuple(value.shape) != tuple(target.shape):
        raise ValueError(
            f"The weight {target.path} does not correspond: expected shape "
            f"{tuple(target.shape)}, received {tuple(value.shape)}."
        )
    target.assign(value.astype(target.dtype))
