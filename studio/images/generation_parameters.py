"""Generation parameters in AUTOMATIC1111's "infotext" layout.

A1111 stores how an image was made as one text block:

    a photo of a cat
    Negative prompt: blurry, low quality
    Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model: sd-v1

The prompt may span several lines; the negative prompt line is optional; the
last line holds `key: value` pairs separated by ", " (a value containing a
comma or a quote is written as a JSON string). Writing the same layout lets
every existing PNG-info reader show our parameters.

The LoRA and embedding files an image used are written as A1111 writes
them, so the image can be made again: each LoRA as `<lora:NAME:STRENGTH>`
in the prompt (A1111 strips these tags before encoding the prompt) and
`Lora hashes: "NAME: HASH, ..."`, each embedding in `TI hashes: "NAME:
HASH, ..."` (names are file names without extension; hashes are A1111's
short hashes, `studio.interop.a1111_hashes`).
"""

import dataclasses
import json
import re

from studio.images.concept_reference import ConceptReference

NEGATIVE_PROMPT_PREFIX = "Negative prompt:"
LORA_HASHES_KEY = "Lora hashes"
TI_HASHES_KEY = "TI hashes"
# A1111's extra-network tags in a prompt: `<lora:name:0.8>`, `<hypernet:x:1>`.
# The LoRA tags this class reads are removed from the prompt with the one
# space we write before each; tags of other kinds stay for callers to report.
EXTRA_NETWORK_PATTERN = re.compile(r"<(\w+):([^>]+)>")
_LORA_TAG_PATTERN = re.compile(r" ?<(?:lora|lyco):([^>]+)>")
# A1111 drops these from names in its hash lists, whose entries they separate.
_NAME_SEPARATORS = str.maketrans("", "", ":,")

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
        loras: `ConceptReference`s of the LoRA files applied, with strengths.
        embeddings: `ConceptReference`s of the embedding files loaded.
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
    loras: tuple = ()
    embeddings: tuple = ()
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.loras = tuple(self.loras)
        self.embeddings = tuple(self.embeddings)

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
        if any(lora.short_hash for lora in self.loras):
            pairs[LORA_HASHES_KEY] = _hash_list(self.loras)
        if any(embedding.short_hash for embedding in self.embeddings):
            pairs[TI_HASHES_KEY] = _hash_list(self.embeddings)
        pairs.update(self.extra)
        parameter_line = ", ".join(
            f"{key}: {_quote(value)}" for key, value in pairs.items()
        )
        tags = "".join(
            f" <lora:{_plain_name(lora.name)}:{_format_number(lora.strength)}>"
            for lora in self.loras
        )
        lines = [self.prompt + tags]
        if self.negative_prompt:
            lines.append(f"{NEGATIVE_PROMPT_PREFIX} {self.negative_prompt}")
        lines.append(parameter_line)
        return "\n".join(lines)

    @classmethod
    def from_infotext(cls, text):
        """Parses A1111 infotext.

        Keys that this class does not name go to `extra` as strings. LoRA
        tags (`<lora:NAME:STRENGTH>`, also A1111's older `<lyco:...>`) leave
        the prompt for `loras`, with their hashes from `Lora hashes`; a tag
        with a separate UNet strength (`<lora:NAME:0.8:0.5>`) and tags of
        other kinds (`<hypernet:...>`) stay in the prompt, since the studio
        cannot apply them (`EXTRA_NETWORK_PATTERN` finds them). A name
        listed in `Lora hashes` without its tag in the prompt is a LoRA of
        strength 1.

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
        lora_hashes = _parse_hash_list(pairs.pop(LORA_HASHES_KEY, ""))
        prompt, loras = _take_lora_tags("\n".join(prompt_lines), lora_hashes)
        # Names tagged in the prompt, read or kept there, are not LoRAs of strength 1.
        named = {_plain_name(match.group(1).split(":")[0].strip())
                 for match in _LORA_TAG_PATTERN.finditer("\n".join(prompt_lines))}
        loras += [ConceptReference(name, short_hash) for name, short_hash in lora_hashes.items()
                  if name not in named]
        embeddings = [
            ConceptReference(name, short_hash)
            for name, short_hash in _parse_hash_list(pairs.pop(TI_HASHES_KEY, "")).items()
        ]
        return cls(
            prompt=prompt,
            negative_prompt="\n".join(negative_lines or []),
            steps=int(pairs.pop("Steps", 0)),
            sampler=pairs.pop("Sampler", ""),
            guidance_scale=float(pairs.pop("CFG scale", 0.0)),
            seed=int(pairs.pop("Seed", 0)),
            width=width,
            height=height,
            model=pairs.pop("Model", ""),
            loras=loras,
            embeddings=embeddings,
            extra=pairs,
        )


def _plain_name(name):
    return str(name).translate(_NAME_SEPARATORS)


def _hash_list(references):
    return ", ".join(
        f"{_plain_name(reference.name)}: {reference.short_hash}"
        for reference in references
        if reference.short_hash
    )


def _parse_hash_list(text):
    """'a: 0123, b: 4567' -> {'a': '0123', 'b': '4567'}."""
    hashes = {}
    for entry in str(text).split(","):
        name, separator, short_hash = entry.rpartition(":")
        if separator and name.strip():
            hashes[name.strip()] = short_hash.strip()
    return hashes


def _take_lora_tags(prompt, hashes):
    """`prompt` without the LoRA tags it can be reproduced from, and their references."""
    loras = []

    def take(match):
        fields = [field.strip() for field in match.group(1).split(":")]
        positional = [field for field in fields[1:] if "=" not in field]
        named = dict(field.split("=", 1) for field in fields[1:] if "=" in field)
        try:
            strength = float(named.get("te", positional[0] if positional else 1.0))
            unet = float(named.get("unet", positional[1] if len(positional) > 1 else strength))
        except ValueError:
            return match.group(0)
        if unet != strength or len(positional) > 2 or set(named) - {"te", "unet"}:
            return match.group(0)
        name = fields[0]
        loras.append(ConceptReference(name, hashes.get(_plain_name(name), ""), strength))
        return ""

    return _LORA_TAG_PATTERN.sub(take, prompt), loras


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
