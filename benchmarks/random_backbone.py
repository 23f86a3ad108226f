"""The full-size networks with random weights, for the benchmarks (no download).

`from_preset(preset, load_weights=False)` would still fetch CLIP's
vocabulary; the benchmarks need only prompts of the right length, so the
byte-level tokenizer stands in for it.
"""


def build_random_backbone(preset, precision):
    """The preset's networks with random weights, under `precision`, and the byte-level tokenizer."""
    from studio.models import (
        BACKBONE_PRESETS,
        COMPONENTS,
        StableDiffusionBackbone,
        network_classes,
    )
    from studio.tokenizers import CLIPTokenizer

    spec = BACKBONE_PRESETS[preset]
    classes = network_classes()
    networks = {
        name: classes[spec[name]["class_name"]](name=name, dtype=precision, **spec[name]["config"])
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


def current_rss_mib():
    """This process's resident memory now, in MiB."""
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
