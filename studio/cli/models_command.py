"""`studio models`: import diffusers / single-file models, export fine-tuned ones.

    studio models import SRC --out DIR [--prediction-type T] [--image-size N]
                                       [--vocabulary PATH] [--overwrite]
    studio models export RUN_OR_DIR --format diffusers|single-file --out PATH
                                       [--dtype float32|float16] [--overwrite]

`import` writes a studio preset folder (`StableDiffusionBackbone
.save_to_preset`), which `from_preset(DIR)` and `generate --model DIR`
load. `export` takes a preset folder, a preset name, or a training run
folder whose `config.json` names its base `model` and which holds the
fine-tuned `unet.weights.h5` (and `text_encoder.weights.h5`). Keras is
imported inside `run`, so `--help` is instant.
"""

import os

from studio.errors import InvalidInputError

FORMATS = ("diffusers", "single-file")
PREDICTION_TYPES = ("epsilon", "v_prediction")
EXPORT_DTYPES = ("float32", "float16")
EXIT_OK = 0
PRESET_CONFIG_FILE = "backbone.json"


def add_parser(subparsers):
    """Registers `models` with its `import` and `export` actions."""
    parser = subparsers.add_parser(
        "models",
        help="import diffusers / .safetensors / .ckpt models, export fine-tuned ones",
        description=(
            "Import Stable Diffusion 1.x / 2.x and SD-XL base models from a diffusers "
            "folder or an original single file (.safetensors, .ckpt: read without running its "
            "code), and export studio models to both."
        ),
    )
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")

    importer = actions.add_parser(
        "import",
        help="convert a diffusers folder or single file into a studio model folder",
        description=(
            "Convert a diffusers folder or an original single file into a studio "
            "model folder, for `generate --model DIR` and training."
        ),
    )
    importer.add_argument("source", help="diffusers folder, or .safetensors / .ckpt file")
    importer.add_argument("--out", required=True, help="the studio model folder to write")
    importer.add_argument(
        "--prediction-type",
        choices=PREDICTION_TYPES,
        default=None,
        help="what the UNet predicts (default: a diffusers folder's scheduler config; "
        "for single files their ModelSpec metadata, else SD 1.x: epsilon; SD 2.x: as "
        "--image-size implies, or epsilon if the file name mentions 512 or base, "
        "else v_prediction)",
    )
    importer.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="training resolution in pixels (default: from the model; SD 2.x single "
        "files: 768 for v_prediction, 512 for epsilon)",
    )
    importer.add_argument(
        "--vocabulary",
        default=None,
        help="single files: CLIP's bpe_simple_vocab_16e6.txt.gz (default: the Keras "
        "cache, downloaded once) or a Hugging Face tokenizer folder",
    )
    importer.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out folder"
    )
    importer.set_defaults(run=run)

    exporter = actions.add_parser(
        "export",
        help="write a studio model as a diffusers folder or a single .safetensors",
        description=(
            "Write a studio model (a model folder, a preset name, or a training run "
            "folder) as a diffusers folder or an original single .safetensors file "
            "that diffusers and AUTOMATIC1111 open."
        ),
    )
    exporter.add_argument("source", help="studio model folder, preset name, or run folder")
    exporter.add_argument("--format", required=True, choices=FORMATS, help="output layout")
    exporter.add_argument("--out", required=True, help="output folder (diffusers) or file")
    exporter.add_argument(
        "--dtype",
        choices=EXPORT_DTYPES,
        default="float32",
        help="stored weights (default: float32)",
    )
    exporter.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exporter.add_argument(
        "--weights", default=None, help="folder of a named preset's weight files, for offline use"
    )
    exporter.add_argument(
        "--vocabulary", default=None, help="local CLIP vocabulary file, for offline use"
    )
    exporter.set_defaults(run=run)
    parser.set_defaults(run=run)
    return parser


def run(args):
    """Runs `models import` or `models export`; returns the exit code."""
    action = getattr(args, "models_command", None)
    if action == "import":
        return _import(args)
    if action == "export":
        return _export(args)
    raise InvalidInputError("Say what to do: `studio models import ...` or `studio models export ...`.")


def _import(args):
    from studio.cli.output_location import writing_to
    from studio.interop.model_import import import_model

    out = os.path.abspath(args.out)
    if os.path.exists(out) and not args.overwrite and (not os.path.isdir(out) or os.listdir(out)):
        raise FileExistsError(
            f"{out} already exists and is not empty; choose another --out or add "
            f"--overwrite. Received: --out {args.out}"
        )
    backbone = import_model(
        args.source,
        prediction_type=args.prediction_type,
        image_size=args.image_size,
        vocabulary=args.vocabulary,
    )
    with writing_to(out, is_folder=True):
        backbone.save_to_preset(out)
    print(f"Imported {args.source}: {describe(backbone)}")
    print(f"Wrote {out}; use it with `studio generate --model {out}`.")
    return EXIT_OK


def _export(args):
    from studio.cli.output_location import writing_to
    from studio.interop.diffusers_folder import export_diffusers_folder
    from studio.interop.single_file_checkpoint import export_single_file

    backbone = load_export_source(args.source, weights=args.weights, vocabulary=args.vocabulary)
    with writing_to(args.out, is_folder=args.format == "diffusers"):
        if args.format == "diffusers":
            path = export_diffusers_folder(
                backbone, args.out, dtype=args.dtype, overwrite=args.overwrite
            )
        else:
            path = export_single_file(backbone, args.out, dtype=args.dtype,
                                      overwrite=args.overwrite)
    print(f"Exported {describe(backbone)} to {path} ({args.format}, {args.dtype}).")
    return EXIT_OK


def load_export_source(source, weights=None, vocabulary=None):
    """The backbone to export: a model folder, a preset name, or a run folder.

    Args:
        source: a folder written by `save_to_preset` (e.g. by `models
            import`), a preset name, or a training run folder whose
            `config.json` names the base `model` and which holds the
            fine-tuned `unet.weights.h5` (and `text_encoder.weights.h5`,
            SD-XL's `text_encoder_2.weights.h5`).
        weights: passed to `from_preset` for named presets.
        vocabulary: passed to `from_preset` for named presets.

    Raises:
        InvalidInputError: a LoRA run (its LoRA must be merged first), or a run
            folder without weights or base model.
    """
    from studio.interop import load_backbone
    from studio.trainers.run.run_directory import (
        CONFIG_FILE,
        LORA_FILE,
        TEXT_ENCODER_2_WEIGHTS_FILE,
        TEXT_ENCODER_WEIGHTS_FILE,
        UNET_WEIGHTS_FILE,
        RunDirectory,
    )

    # The weight files a full DreamBooth run folder holds.
    weight_files = {"unet": UNET_WEIGHTS_FILE, "text_encoder": TEXT_ENCODER_WEIGHTS_FILE,
                    "text_encoder_2": TEXT_ENCODER_2_WEIGHTS_FILE}
    source = os.fspath(source)
    config_path = os.path.join(source, CONFIG_FILE)
    if not os.path.isdir(source) or os.path.isfile(os.path.join(source, PRESET_CONFIG_FILE)):
        return load_backbone(source, weights=weights, vocabulary=vocabulary)
    if not os.path.isfile(config_path):
        raise InvalidInputError(
            f"{source} is neither a studio model folder ({PRESET_CONFIG_FILE}) nor a "
            f"training run ({CONFIG_FILE}). Received: {sorted(os.listdir(source))[:10]}"
        )
    if os.path.isfile(os.path.join(source, LORA_FILE)):
        raise InvalidInputError(
            f"{source} is a LoRA run: its {LORA_FILE} loads in AUTOMATIC1111 and "
            "diffusers as it is; to export a whole model, save the merged backbone "
            "(`DreamBoothTrainer.save_backbone`) and export that folder."
        )
    base = RunDirectory(source).read_config().get("model")
    found = {
        component: os.path.join(source, name)
        for component, name in weight_files.items()
        if os.path.isfile(os.path.join(source, name))
    }
    if not base or "unet" not in found:
        raise InvalidInputError(
            f"{source} is not a finished fine-tuning run: expected `model` in its "
            f"{CONFIG_FILE} and a {weight_files['unet']}. Received: model={base!r}, "
            f"files {sorted(os.listdir(source))[:10]}"
        )
    backbone = load_backbone(base, weights=weights, vocabulary=vocabulary)
    for component, path in found.items():
        getattr(backbone, component).load_weights(path)
    backbone.name = os.path.basename(os.path.normpath(source))
    return backbone


def describe(backbone):
    """One line: family, prediction type, resolution."""
    if backbone.family == "sdxl":
        family = "SD-XL"
    elif backbone.text_encoder.intermediate_activation == "quick_gelu":
        family = "SD 1.x-style"
    else:
        family = "SD 2.x-style"
    return (
        f"{backbone.name} ({family}, {backbone.prediction_type}, "
        f"{backbone.image_size} px, text width {backbone.text_encoder.hidden_dim})"
    )
