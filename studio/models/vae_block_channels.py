"""The check both VAE halves make of their level widths."""


def check_vae_block_channels(block_channels, norm_groups):
    """Raises ValueError unless `block_channels` is a usable list of widths.

    Args:
        block_channels: the channels of each resolution level.
        norm_groups: the GroupNormalization group count, which must divide
            every width.
    """
    if not block_channels:
        raise ValueError(
            "`block_channels` must name at least one level. "
            f"Received: block_channels={block_channels}"
        )
    if any(filters % norm_groups != 0 for filters in block_channels):
        raise ValueError(
            "Every entry of `block_channels` must be divisible by "
            f"`norm_groups`. Received: block_channels={block_channels}, "
            f"norm_groups={norm_groups}"
        )
