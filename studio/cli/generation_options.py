"""The options `studio generate` and `studio grid` share, and the settings they make.

Options that can replace what a `--from-png` image says default to None, so
that the settings know which ones the user gave.
"""

import re
import sys

from studio.errors import InvalidInputError
from studio.trainers.settings.precision import PRECISIONS

# Options that replace what a --from-png image says -> `GenerationSettings` fields.
OVERRIDES = {
    "model": "model",
    "negative_prompt": "negative_prompt",
    "steps": "steps",
    "guidance": "guidance_scale",
    "seed": "seed",
    "sampler": "sampler",
    "strength": "denoising_strength",
}
DEFAULTS = {"model": "tiny", "negative_prompt": "", "steps": 30, "guidance_scale": 7.5,
            "sampler": "ddim", "denoising_strength": 0.8}


def add_generation_options(parser, command, several_prompts=True):
    """Adds the model, prompt, sampling, concept-file and --from-png options to `parser`."""
    parser.add_argument(
        "--model",
        default=None,
        help="preset name (sd-v1, sd-v2, tiny), a folder saved by the studio, a "
        "diffusers folder, or an SD 1.x / 2.x .safetensors / .ckpt file (converted "
        "on load; `studio models import` converts once) (default: tiny)",
    )
    parser.add_argument("--prompt", action="append" if several_prompts else "store",
                        default=None,
                        help="the prompt" + ("; repeat for several prompts" if several_prompts
                                             else "") + " (required without --from-png)")
    parser.add_argument("--from-png", default=None, metavar="IMAGE",
                        help=f"{command} again from the parameters an image carries (ours or "
                        "AUTOMATIC1111's infotext): prompt, sampler, seed, model, LoRA and "
                        "embedding files; the other options given replace what it says")
    parser.add_argument("--concepts-dir", action="append", default=[], metavar="DIR",
                        help="with --from-png: a folder searched (with its subfolders) for the "
                        "LoRA and embedding files and the model the image names; repeat for "
                        "several")
    parser.add_argument("--negative-prompt", default=None, help="the negative prompt")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: 30)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale (default: 7.5)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the first image; image i uses seed+i (default: random)")
    parser.add_argument("--sampler", default=None,
                        help="ddim, euler, euler_a, dpmpp_2m or dpmpp_2m_karras (default: ddim); "
                             "SD3 models sample with flow-matching Euler (euler or ddim)")
    parser.add_argument("--size", default=None,
                        help="WIDTHxHEIGHT or one number (default: the model's resolution)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="dtype policy (default: float32)")
    parser.add_argument("--embedding", action="append", default=[],
                        help="textual-inversion embedding file (any format `studio embeddings` "
                        "reads); its tokens can be used in prompts; repeat for several")
    parser.add_argument("--lora", action="append", default=[],
                        help="LoRA file (kohya key names, as `studio train dreambooth` "
                        "writes); repeat for several")
    parser.add_argument("--lora-scale", type=float, default=None,
                        help="strength of the LoRA files: 0 is the base model (default: 1.0, "
                        "or with --from-png each LoRA's strength in the image)")
    parser.add_argument("--weights", default=None,
                        help="folder holding the preset's weight files, for offline use")
    parser.add_argument("--vocabulary", default=None,
                        help="local CLIP vocabulary file (bpe_simple_vocab_16e6.txt.gz), for offline use")


def parse_size(text):
    """'512', '512x768' -> (width, height)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*", text or "")
    if not match:
        raise InvalidInputError(f"`--size` must be N or WIDTHxHEIGHT. Received: --size {text!r}")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


def given_settings(args):
    """The `GenerationSettings` fields the user gave as options (dict)."""
    given = {field: getattr(args, option) for option, field in OVERRIDES.items()
             if getattr(args, option, None) is not None}
    if args.size:
        given["width"], given["height"] = parse_size(args.size)
    if args.prompt:
        prompts = [args.prompt] if isinstance(args.prompt, str) else args.prompt
        given["prompt"] = prompts[0] if len(prompts) == 1 else list(prompts)
    return given


def settings_from_options(args, command):
    """The `GenerationSettings` of the options (without --from-png)."""
    from studio.pipelines import GenerationSettings

    given = given_settings(args)
    if "prompt" not in given:
        raise InvalidInputError(
            "Give a prompt (--prompt TEXT) or an image to make again (--from-png IMAGE). "
            "Received: neither"
        )
    scale = 1.0 if args.lora_scale is None else args.lora_scale
    return GenerationSettings(
        **{**DEFAULTS, **given},
        loras=[(path, scale) for path in args.lora],
        embeddings=args.embedding,
    )


def print_notes(command, path, notes):
    for note in notes:
        print(f"studio {command}: warning: {path}: {note}", file=sys.stderr)


def read_png_parameters(path):
    """The `GenerationParameters` of --from-png's image, or an `InvalidInputError` saying why not."""
    from PIL import UnidentifiedImageError

    from studio.images import read_parameters

    try:
        parameters = read_parameters(path)
    except UnidentifiedImageError:
        raise InvalidInputError(
            f"--from-png {path} is not an image file; give a PNG that carries its "
            "generation parameters"
        ) from None
    except ValueError as error:
        raise InvalidInputError(f"--from-png {path}: its parameters cannot be read: {error}") from None
    if parameters is None:
        raise InvalidInputError(
            f"--from-png {path} carries no generation parameters (no `parameters` text "
            "chunk, as the studio and AUTOMATIC1111 write); give an image made by either"
        )
    return parameters


def runner_of(args, command):
    """A `GenerationRunner` with the load options; warnings print as one line each."""
    from studio.pipelines import GenerationRunner

    return GenerationRunner(
        weights=args.weights,
        vocabulary=args.vocabulary,
        dtype=args.precision,
        warn=lambda message: print(f"studio {command}: warning: {message}", file=sys.stderr),
    )
