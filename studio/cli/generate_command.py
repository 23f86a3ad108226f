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
        default="tiny",
        help="preset name (sd-v1, sd-v2, tiny), a folder saved by the studio, a "
        "diffusers folder, or an SD 1.x / 2.x .safetensors / .ckpt file (converted "
        "on load; `studio models import` converts once) (default: tiny)",
    )
    parser.add_argument("--prompt", required=True, action="append",
                        help="the prompt; repeat for several prompts")
    parser.add_argument("--negative-prompt", default="", help="the negative prompt")
    parser.add_argument("--steps", type=int, default=30, help="sampling steps (default: 30)")
    parser.add_argument("--guidance", type=float, default=7.5,
                        help="classifier-free guidance scale (default: 7.5)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the first image; image i uses seed+i (default: random)")
    parser.add_argument("--sampler", default="ddim",
                        help="ddim, euler, euler_a or dpmpp_2m (default: ddim)")
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
    parser.add_argument("--strength", type=float, default=0.8,
                        help="image-to-image: share of the image replaced by noise (default: 0.8)")
    parser.add_argument("--mask", default=None,
                        help="inpainting mask for --init-image, same size: white is generated "
                        "anew, black kept")
    parser.add_argument("--mask-blur", type=float, default=0.0,
                        help="inpainting: Gaussian blur of the mask, in pixels (default: 0)")
    parser.add_argument("--mask-padding", type=int, default=0,
                        help="inpainting: pixels by which the white region grows (default: 0)")
    parser.add_argument("--embedding", action="append", default=[],
                        help="textual-inversion embedding file (any format `studio embeddings` "
                        "reads); its tokens can be used in prompts; repeat for several")
    parser.add_argument("--lora", action="append", default=[],
                        help="LoRA file (kohya key names, as `studio train dreambooth` "
                        "writes); repeat for several")
    parser.add_argument("--lora-scale", type=float, default=1.0,
                        help="strength of the LoRA files: 0 is the base model (default: 1.0)")
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
    if args.steps < 1 or args.num_images < 1:
        raise InvalidInputError(
            "`--steps` and `--num-images` must be at least 1. "
            f"Received: --steps {args.steps}, --num-images {args.num_images}"
        )
    width, height = parse_size(args.size) if args.size else (None, None)
    init_image = None
    if args.init_image:
        from PIL import Image

        with Image.open(args.init_image) as image:
            init_image = image.convert("RGB")
            if width:
                init_image = init_image.resize((width, height), Image.LANCZOS)
            import numpy as np

            init_image = np.asarray(init_image)
    mask = _read_mask(args.mask, init_image, resize=bool(width))

    from tqdm import tqdm

    from studio.cli.output_location import writing_to
    from studio.images import next_image_index, save_png
    from studio.interop import load_backbone
    from studio.pipelines import TextToImagePipeline

    print(f"Loading {args.model} ...", flush=True)
    backbone = load_backbone(
        args.model,
        weights=args.weights,
        vocabulary=args.vocabulary,
        dtype=args.precision,
    )
    backbone = _with_loras_and_embeddings(backbone, args.lora, args.lora_scale, args.embedding)
    pipeline = TextToImagePipeline(backbone)
    count = len(args.prompt) * args.num_images
    batches = -(-count // (args.batch_size or count))
    with tqdm(total=args.steps * batches, desc="Generating", unit="step") as progress:
        result = pipeline(
            args.prompt,
            negative_prompt=args.negative_prompt,
            num_images_per_prompt=args.num_images,
            num_steps=args.steps,
            guidance_scale=args.guidance,
            seed=args.seed,
            height=height,
            width=width,
            sampler=args.sampler,
            init_image=init_image,
            strength=args.strength,
            batch_size=args.batch_size,
            mask=mask,
            mask_blur=args.mask_blur,
            mask_padding=args.mask_padding,
            callback=lambda step, total: progress.update(1),
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


def _with_loras_and_embeddings(backbone, lora_paths, lora_scale, embedding_paths):
    """`backbone` with the LoRA files applied and a view reading the embeddings' tokens."""
    import warnings

    from studio.embeddings import load_embedding
    from studio.embeddings.backbone_with_embeddings import backbone_with_embeddings
    from studio.lora.lora_weights import LoRAWeights

    for path in lora_paths:
        LoRAWeights.load(path).apply(backbone, scale=lora_scale)
    embeddings = [load_embedding(path) for path in embedding_paths]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view = backbone_with_embeddings(backbone, embeddings)
    for warning in caught:
        print(f"studio generate: warning: {warning.message}", file=sys.stderr)
    return view
