"""`studio generate`: text-to-image (and image-to-image) from the command line."""

import os
import re
import sys

from studio.errors import InvalidInputError
from studio.trainers.settings.precision import PRECISIONS


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "generate",
        help="generate images from a prompt",
        description=(
            "Generate images and save them as PNGs that carry their "
            "parameters (AUTOMATIC1111's `parameters` chunk)."
        ),
    )
    parser.add_argument(
        "--model",
        default=None,
        help="preset name (sd-v1, sd-v2, tiny), a folder saved by the studio, a "
        "diffusers folder, or an SD 1.x / 2.x .safetensors / .ckpt file (converted "
        "on load; `studio models import` converts once) (default: tiny)",
    )
    parser.add_argument("--prompt", action="append", default=None,
                        help="the prompt; repeat for several prompts (required without --from-png)")
    parser.add_argument("--from-png", default=None, metavar="IMAGE",
                        help="make an image again from the parameters it carries (ours or "
                        "AUTOMATIC1111's infotext): prompt, sampler, seed, model, LoRA and "
                        "embedding files; the other options given replace what it says")
    parser.add_argument("--concepts-dir", action="append", default=[], metavar="DIR",
                        help="with --from-png: a folder searched (with its subfolders) for the "
                        "LoRA and embedding files the image names; repeat for several")
    parser.add_argument("--negative-prompt", default=None, help="the negative prompt")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: 30)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale (default: 7.5)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the first image; image i uses seed+i (default: random)")
    parser.add_argument("--sampler", default=None,
                        help="ddim, euler, euler_a, dpmpp_2m or dpmpp_2m_karras (default: ddim)")
    parser.add_argument("--size", default=None,
                        help="WIDTHxHEIGHT or one number (default: the model's resolution)")
    parser.add_argument("--num-images", type=int, default=1,
                        help="images per prompt (default: 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per UNet batch (default: all at once)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="dtype policy (default: float32)")
    parser.add_argument("--init-image", default=None,
                        help="start from this image (image-to-image)")
    parser.add_argument("--strength", type=float, default=None,
                        help="image-to-image: share of the image replaced by noise (default: 0.8)")
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
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(run=run)
    return parser


def parse_size(text):
    """'512', '512x768' -> (width, height)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*", text or "")
    if not match:
        raise InvalidInputError(f"`--size` must be N or WIDTHxHEIGHT. Received: --size {text!r}")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


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


def run(args):
    if (args.steps is not None and args.steps < 1) or args.num_images < 1:
        raise InvalidInputError(
            "`--steps` and `--num-images` must be at least 1. "
            f"Received: --steps {args.steps}, --num-images {args.num_images}"
        )
    settings = _settings(args)

    from tqdm import tqdm

    from studio.cli.output_location import writing_to
    from studio.images import next_image_index, save_png
    from studio.pipelines import GenerationRunner

    init_image = _init_image(args.init_image, settings.width, settings.height)
    print(f"Loading {settings.model} ...", flush=True)
    runner = GenerationRunner(
        weights=args.weights,
        vocabulary=args.vocabulary,
        dtype=args.precision,
        warn=lambda message: print(f"studio generate: warning: {message}", file=sys.stderr),
    )
    prompts = [settings.prompt] if isinstance(settings.prompt, str) else settings.prompt
    count = len(prompts) * args.num_images
    batches = -(-count // (args.batch_size or count))
    with tqdm(total=settings.steps * batches, desc="Generating", unit="step") as progress:
        result = runner.run(
            settings,
            num_images_per_prompt=args.num_images,
            batch_size=args.batch_size,
            callback=lambda step, total: progress.update(1),
            init_image=init_image,
        )
    index = next_image_index(args.out)
    written = []
    try:
        with writing_to(args.out, is_folder=True):
            for offset, (image, parameters) in enumerate(zip(result.images, result.parameters)):
                path = os.path.join(args.out, f"{index + offset:05d}-{parameters.seed}.png")
                save_png(image, path, parameters)
                written.append(path)
    except Exception:
        # All of the images or none: a second try then numbers them the same.
        for path in written:
            os.remove(path)
        raise
    for path in written:
        print(path)
    return 0


def _settings(args):
    """The `GenerationSettings` of the options, or of --from-png's image with the options given."""
    from studio.pipelines import GenerationSettings

    given = {field: getattr(args, option) for option, field in OVERRIDES.items()
             if getattr(args, option) is not None}
    if args.size:
        given["width"], given["height"] = parse_size(args.size)
    if args.prompt:
        given["prompt"] = args.prompt[0] if len(args.prompt) == 1 else list(args.prompt)
    if not args.from_png:
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
    from studio.pipelines import settings_from_parameters

    settings, notes = settings_from_parameters(
        _read_parameters(args.from_png),
        overrides=given,
        lora_files=args.lora,
        embedding_files=args.embedding,
        search_folders=args.concepts_dir,
        has_init_image=args.init_image is not None,
    )
    for note in notes:
        print(f"studio generate: warning: {args.from_png}: {note}", file=sys.stderr)
    if args.lora_scale is not None:
        settings.loras = tuple((path, args.lora_scale) for path, _ in settings.loras)
    return settings


def _read_parameters(path):
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


def _init_image(path, width, height):
    """The start image as uint8 pixels, scaled to `width` x `height` when given."""
    if not path:
        return None
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if width and image.size != (width, height):
            image = image.resize((width, height), Image.LANCZOS)
        return np.asarray(image)


