"""Generation parameters in AUTOMATIC1111's "infotext" layout.

A1111 stores how an image was made as one text block:

    a photo of a cat
    Negative prompt: blurry, low quality
    Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model: sd-v1

The prompt may span several lines; the negative prompt line is optional; the
last line holds `key: value` pairs separated by ", " (a value containing a
comma or a quote is written as a JSON string). Writing the same layout lets
every existing PNG-info reader show our parameters.
"""

import dataclasses
import json

import re

NEGATIVE_PROMPT_PREFIX = "Negative prompt:"

# One `key: value` pair of the last line; a value is a JSON string or runs to
# the next comma. Keys start with a letter and may hold spaces, '-' and '/'
# ("CFG scale", "Lora hashes").
_PAIR_PATTERN = re.compile(
    r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
)
# The last line is a parameter line when it starts with a few pairs.
_PARAMETER_LINE_PATTERN = re.compile(r"^(\s*\w[\w \-/]+:\s*[^,]*,){2,}")


@dataclasses.dataclass
class GenerationParameters:
    """How one image was generated.

    Args:
        prompt: the positive prompt.
        negative_prompt: the negative prompt ("" when none).
        steps: number of sampling steps.
        sampler: the sampler's A1111 name ("DDIM", "Euler", "Euler a", "DPM++ 2M").
        guidance_scale: classifier-free guidance scale ("CFG scale").
        seed: the seed of this image's initial noise.
        width: image width in pixels.
        height: image height in pixels.
        model: the model's preset name or path.
        extra: further `key: value` pairs, written after the standard ones
            (e.g. "Denoising strength" for image-to-image).
    """

    prompt: str
    negative_prompt: str = ""
    steps: int = 50
    sampler: str = "DDIM"
    guidance_scale: float = 7.5
    seed: int = 0
    width: int = 512
    height: int = 512
    model: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    def to_infotext(self):
        """Returns the parameters as A1111 infotext."""
        pairs = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "CFG scale": _format_number(self.guidance_scale),
            "Seed": self.seed,
            "Size": f"{self.width}x{self.height}",
            "Model": self.model,
        }
        pairs.update(self.extra)
        parameter_line = ", ".join(
            f"{key}: {_quote(value)}" for key, value in pairs.items()
        )
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"{NEGATIVE_PROMPT_PREFIX} {self.negative_prompt}")
        lines.append(parameter_line)
        return "\n".join(lines)

    @classmethod
    def from_infotext(cls, text):
        """Parses A1111 infotext.

        Keys that this class does not name go to `extra` as strings.

        Raises:
            ValueError: if the text has no parameter line.
        """
        lines = text.strip("\n").split("\n")
        if not lines or not _PARAMETER_LINE_PATTERN.match(lines[-1] + ","):
            raise ValueError(
                "Expected A1111 infotext whose last line holds `key: value` "
                "pairs such as 'Steps: 20, Sampler: DDIM'. "
                f"Received: {text[:200]!r}"
            )
        pairs = {
            key.strip(): _unquote(value.strip())
            for key, value in _PAIR_PATTERN.findall(lines[-1])
        }
        prompt_lines, negative_lines = [], None
        for line in lines[:-1]:
            if negative_lines is None and line.startswith(NEGATIVE_PROMPT_PREFIX):
                negative_lines = [line[len(NEGATIVE_PROMPT_PREFIX) :].strip()]
            elif negative_lines is not None:
                negative_lines.append(line)
            else:
                prompt_lines.append(line)
        width, height = 0, 0
        if "Size" in pairs:
            width, height = (int(v) for v in pairs.pop("Size").split("x"))
        return cls(
            prompt="\n".join(prompt_lines),
            negative_prompt="\n".join(negative_lines or []),
            steps=int(pairs.pop("Steps", 0)),
            sampler=pairs.pop("Sampler", ""),
            guidance_scale=float(pairs.pop("CFG scale", 0.0)),
            seed=int(pairs.pop("Seed", 0)),
            width=width,
            height=height,
            model=pairs.pop("Model", ""),
            extra=pairs,
        )


def _format_number(value):
    value = float(value)
    return int(value) if value.is_integer() else value


def _quote(value):
    text = str(value)
    if "," in text or '"' in text or "\n" in text or ":" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def _unquote(value):
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    return value
