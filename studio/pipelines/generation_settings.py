"""What one generation is made of: prompt, sampling, model and the concept files it uses."""

import dataclasses


@dataclasses.dataclass
class GenerationSettings:
    """Everything that decides the images of a generation, files named by path.

    `GenerationRunner` makes images from it; `settings_from_parameters`
    makes it from an image's infotext (ours or AUTOMATIC1111's).

    Args:
        prompt: a prompt, or a list of prompts.
        negative_prompt: the negative prompt ("" for none).
        steps: sampling steps.
        sampler: a sampler's short name ("ddim", "euler", "euler_a",
            "dpmpp_2m", "dpmpp_2m_karras") or A1111 name ("Euler a").
        guidance_scale: classifier-free guidance scale (A1111's "CFG scale").
        seed: the first image's seed; image `i` uses `seed + i` (None: random).
        width: image width in pixels (None: the model's resolution).
        height: image height in pixels (None: the model's resolution).
        model: what `--model` takes: a preset name, a saved or diffusers
            folder, or a single checkpoint file.
        loras: `(path, strength)` pairs of kohya LoRA files, applied in order.
        embeddings: paths of textual-inversion embedding files.
        denoising_strength: image-to-image only: the share of the start
            image replaced by noise, in (0, 1].
    """

    prompt: object
    negative_prompt: str = ""
    steps: int = 30
    sampler: str = "ddim"
    guidance_scale: float = 7.5
    seed: int = None
    width: int = None
    height: int = None
    model: str = "tiny"
    loras: tuple = ()
    embeddings: tuple = ()
    denoising_strength: float = 0.8

    def __post_init__(self):
        self.loras = tuple((str(path), float(strength)) for path, strength in self.loras)
        self.embeddings = tuple(str(path) for path in self.embeddings)
