"""`studio embeddings`: inspect and convert textual-inversion embedding files.

    studio embeddings inspect FILE [--model PRESET]
    studio embeddings convert IN OUT --format native|diffusers|kohya|a1111
    studio embeddings convert learned_embeds.safetensors OUT --clip-g learned_embeds_2.safetensors --format kohya

Keras is imported only by `inspect --model` (to read the model's token
table), so the rest answers at once.
"""

import os
import sys

from studio.embeddings.embedding_files import FORMATS, SAVE_DTYPES
from studio.embeddings.textual_inversion_embedding import BASE_FAMILY_KEY
from studio.errors import InvalidInputError

TOP_K = 5


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "embeddings",
        help="inspect and convert textual-inversion embedding files",
        description=(
            "Inspect and convert textual-inversion embeddings: the studio's "
            "native .safetensors, diffusers, kohya and AUTOMATIC1111 files. "
            "PyTorch files are read without running their code."
        ),
    )
    commands = parser.add_subparsers(dest="embeddings_command", metavar="ACTION")

    inspect = commands.add_parser(
        "inspect",
        help="show an embedding file's format, tokens, vectors and metadata",
        description=(
            "Show an embedding file's format, tokens, shapes, dtype, vector "
            "norms and metadata; with --model, also each vector's nearest "
            "vocabulary words."
        ),
    )
    inspect.add_argument("file", help="the embedding file (.safetensors, .pt, .bin)")
    inspect.add_argument(
        "--model",
        default=None,
        help="preset name or saved model folder: check compatibility and list "
        "each vector's nearest words",
    )
    inspect.add_argument("--top-k", type=int, default=TOP_K,
                         help=f"nearest words per vector (default: {TOP_K})")
    inspect.add_argument("--weights", default=None,
                         help="folder holding the preset's weight files, for offline use")
    inspect.add_argument("--vocabulary", default=None,
                         help="local CLIP vocabulary file, for offline use")

    convert = commands.add_parser(
        "convert",
        help="write an embedding in another format",
        description="Read an embedding file of any supported format and write it in another.",
    )
    convert.add_argument("input", help="the embedding file to read")
    convert.add_argument("output", help="the file to write")
    convert.add_argument("--format", required=True, choices=FORMATS, help="the output format")
    convert.add_argument("--dtype", default=None, choices=SAVE_DTYPES,
                         help="float32 or float16 (default: float16 stays float16, "
                         "the rest float32; native is always float32)")
    convert.add_argument("--placeholder", default=None,
                         help="rename the token (kohya files do not name it)")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace OUTPUT if it exists")
    convert.add_argument("--clip-g", default=None, metavar="FILE",
                         help="diffusers' SD-XL pair: INPUT is learned_embeds (CLIP ViT-L), FILE "
                         "learned_embeds_2 (bigG); OUTPUT is one {clip_l, clip_g} file")

    parser.set_defaults(run=run, embeddings_parser=parser)
    return parser


def run(args):
    if args.embeddings_command == "inspect":
        return run_inspect(args)
    if args.embeddings_command == "convert":
        return run_convert(args)
    args.embeddings_parser.print_help(sys.stderr)
    return 2


def run_convert(args):
    from studio.cli.output_location import writing_to
    from studio.embeddings.embedding_files import convert_embedding

    if os.path.exists(args.output) and not args.overwrite:
        raise InvalidInputError(
            f"{args.output} exists; pass --overwrite to replace it. "
            f"Received: OUTPUT {args.output}"
        )
    with writing_to(args.output):
        if args.clip_g:
            from studio.embeddings.embedding_files import save_embedding
            from studio.embeddings.sdxl_embedding_file import load_diffusers_sdxl_embedding

            embedding = load_diffusers_sdxl_embedding(args.input, args.clip_g)
            if args.placeholder is not None:
                embedding = embedding.renamed(args.placeholder)
            save_embedding(embedding, args.output, format=args.format, dtype=args.dtype)
        else:
            embedding = convert_embedding(
                args.input, args.output, format=args.format, dtype=args.dtype,
                placeholder=args.placeholder,
            )
    print(
        f"Wrote {args.output} ({args.format}): "
        + ", ".join(f"{key} x{count}" for key, count in embedding.num_vectors.items())
    )
    return 0


def run_inspect(args):
    from studio.embeddings.embedding_files import load_embedding

    if args.top_k < 1:
        raise InvalidInputError(f"`--top-k` must be at least 1. Received: --top-k {args.top_k}")
    embedding = load_embedding(args.file)
    for line in describe_embedding(embedding, args.file):
        print(line)
    if args.model is None:
        return 0
    from studio.embeddings.embedding_compatibility import check_compatible
    from studio.embeddings.nearest_words import nearest_words

    if embedding.architecture != "sd":
        check_compatible(embedding, None)  # Raises: say so before loading a model.
    table, tokenizer, weights_hash = _load_model_vocabulary(args)

    for warning in check_compatible(embedding, table.shape[1], weights_hash):
        print(f"Warning: {warning}")
    print(f"Nearest words in {args.model} (cosine similarity):")
    for placeholder, vectors in embedding.vectors.items():
        for index, words in enumerate(nearest_words(vectors, table, tokenizer, k=args.top_k)):
            listed = ", ".join(f"{token} {similarity:.3f}" for token, similarity in words)
            print(f"  {placeholder}[{index}]: {listed}")
    return 0


def describe_embedding(embedding, path=None):
    """The lines `inspect` prints for an embedding (format, tokens, norms, metadata)."""
    lines = []
    if path is not None:
        lines.append(f"File: {path}")
    family = "SD 1.x/2.x"
    if embedding.architecture == "sd-xl":
        # SD3's CLIP-L/G are SD-XL's: the studio's SD3 files say which they came from.
        trained_on = "SD3" if embedding.metadata.get(BASE_FAMILY_KEY) == "sd3" else "SD-XL"
        family = f"{trained_on} (clip_l + clip_g)"
    lines.append(f"Format: {embedding.format or 'in memory'} ({family})")
    lines.append(f"Dtype: {embedding.dtype}")
    lines.append(f"Width: {embedding.text_encoder_width}")
    norms = embedding.vector_norms()
    label = "Encoders" if embedding.architecture == "sd-xl" else "Tokens"
    lines.append(f"{label}:")
    for key, vectors in embedding.vectors.items():
        listed = ", ".join(f"{norm:.4f}" for norm in norms[key])
        lines.append(f"  {key}: shape {list(vectors.shape)}, norms [{listed}]")
    fields = {
        "base model": embedding.base_model,
        "base model hash": embedding.base_model_hash,
        "initializer": embedding.initializer,
        "steps": "" if embedding.steps is None else str(embedding.steps),
    }
    for name, value in fields.items():
        if value:
            lines.append(f"{name.capitalize()}: {value}")
    if embedding.metadata:
        lines.append("Metadata:")
        lines.extend(f"  {key}: {value}" for key, value in sorted(embedding.metadata.items()))
    return lines


def _load_model_vocabulary(args):
    """The model's token table (numpy), tokenizer, and text-encoder weight hash."""
    import keras

    from studio.interop import load_backbone
    from studio.models import BACKBONE_PRESETS

    print(f"Loading {args.model} ...", flush=True)
    backbone = load_backbone(
        args.model, weights=args.weights, vocabulary=args.vocabulary
    )
    table = keras.ops.convert_to_numpy(backbone.token_embedding.embeddings)
    weights = (BACKBONE_PRESETS.get(args.model) or {}).get("weights") or {}
    weights_hash = (weights.get("text_encoder") or {}).get("file_hash")
    return table, backbone.tokenizer, weights_hash
