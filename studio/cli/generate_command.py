"""`studio generate`: text-to-image (and image-to-image) from the command line."""

import os

from studio.cli.generation_options import (
    add_generation_options,
    given_settings,
    print_notes,
    read_png_parameters,
    runner_of,
    settings_from_options,
)
from studio.errors import InvalidInputError

COMMAND = "generate"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "generate",
        help="generate images from a prompt",
        description=(
            "Generate images and save them as PNGs that carry their "
            "parameters (AUTOMATIC1111's `parameters` chunk)."
        ),
    )
    add_generation_options(parser, "make the images")
    parser.add_argument("--num-images", type=int, default=1,
                        help="images per prompt (default: 1)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per UNet batch (default: all at once)")
    parser.add_argument("--init-image", default=None,
                        help="start from this image (image-to-image)")
    parser.add_argument("--strength", type=float, default=None,
                        help="image-to-image: share of the image replaced by noise (default: 0.8)")
    parser.add_argument("--mask", default=None,
                        help="inpainting mask for --init-image, same size: white is generated "
                        "anew, black kept")
    parser.add_argument("--mask-blur", type=float, default=0.0,
                        help="inpainting: Gaussian blur of the mask, in pixels (default: 0)")
    parser.add_argument("--mask-padding", type=int, default=0,
                        help="inpainting: pixels by which the white region grows (default: 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(run=run)
    return parser


def _read_mask(path, init_image, resize):
    """The `--mask` image as a grayscale array (or None); `resize`: to the init image's size."""
    if path is None:
        return None
    if init_image is None:
        raise InvalidInputError(
            "`--mask` applies to an image: give `--init-image` too. "
            f"Received: --mask {path!r} without --init-image"
        )
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mask = image.convert("L")
    except (OSError, UnidentifiedImageError) as error:
        raise InvalidInputError(f"Cannot read the mask image {path!r}: {error}") from None
    height, width = init_image.shape[:2]
    if resize and mask.size != (width, height):
        # --size resized the init image; the mask follows it, kept sharp.
        mask = mask.resize((width, height), Image.NEAREST)
    return np.asarray(mask)


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

    init_image = _init_image(args.init_image, settings.width, settings.height)
    mask = _read_mask(args.mask, init_image, resize=bool(settings.width))
    print(f"Loading {settings.model} ...", flush=True)
    runner = runner_of(args, COMMAND)
    prompts = [settings.prompt] if isinstance(settings.prompt, str) else settings.prompt
    count = len(prompts) * args.num_images
    batches = -(-count // (args.batch_size or count))
    with tqdm(total=settings.steps * batches, desc="Generating", unit="step") as progress:
        result = runner.run(
            settings,
            num_images_per_prompt=args.num_images,
            batch_size=args.batch_size,
            mask=mask,
            mask_blur=args.mask_blur,
            mask_padding=args.mask_padding,
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
    if not args.from_png:
        return settings_from_options(args, COMMAND)
    from studio.pipelines import settings_from_parameters

    settings, notes = settings_from_parameters(
        read_png_parameters(args.from_png),
        overrides=given_settings(args),
        lora_files=args.lora,
        embedding_files=args.embedding,
        search_folders=args.concepts_dir,
        has_init_image=args.init_image is not None,
    )
    print_notes(COMMAND, args.from_png, notes)
    if args.lora_scale is not None:
        settings.loras = tuple((path, args.lora_scale) for path, _ in settings.loras)
    return settings


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


