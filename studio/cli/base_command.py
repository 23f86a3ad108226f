"""`studio train base`: pretrain the embedded `tiny-shapes` model from scratch on the shapes world.

`studio train base-xl` makes `tiny-shapes-xl` from it (the SDXL family);
`studio train base-sd3` makes `tiny-shapes-sd3` (the SD3 family).

A thin shell over `studio.trainers.pretrain_base_model` (its options come
from `BaseModelSettings`); `--ship` copies the weights into the package.
`studio train classifier` trains the shapes-world attribute classifier.
"""

import os

# Steps of the shipped classifier (`studio train classifier`): at 1500 its
# shape accuracy on held-out augmented renders was 0.959 and still rising;
# at 4000, 0.997 (4 minutes on 2 cores).
CLASSIFIER_STEPS = 4000
DEFAULT_OUT = os.path.join("runs", "base")
DEFAULT_XL_OUT = os.path.join("runs", "base-xl")
DEFAULT_SD3_OUT = os.path.join("runs", "base-sd3")


def add_method_parser(methods):
    """Registers `studio train base` and `studio train classifier`."""
    from studio.cli.settings_options import add_settings_options
    from studio.trainers.settings.base_model_settings import BaseModelSettings

    parser = methods.add_parser(
        "base",
        help="pretrain the embedded tiny-shapes model from scratch",
        description=(
            "Train the tiny-shapes preset's VAE, then its text encoder and UNet, on the "
            "procedural shapes world, reproducibly from --seed. --out gets vae/ and "
            "diffusion/ run folders (checkpoints, TensorBoard logs) and model/ (a saved "
            "model). --resume continues an interrupted run; --ship copies the weights "
            "into the package."
        ),
    )
    add_settings_options(parser, BaseModelSettings)
    add = parser.add_argument
    add("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    add("--resume", action="store_true", help="continue the run in --out")
    add("--ship", action="store_true",
        help="copy the trained weights into studio/pretrained/ (the tiny-shapes preset)")
    parser.set_defaults(run=run)
    _add_sdxl_parser(methods)
    _add_sd3_parser(methods)
    _add_classifier_parser(methods)
    return parser


def _add_sdxl_parser(methods):
    from studio.cli.settings_options import add_settings_options
    from studio.trainers.settings.sdxl_shapes_settings import SDXLShapesSettings

    parser = methods.add_parser(
        "base-xl",
        help="make the embedded tiny-shapes-xl model (tiny-shapes in the SDXL family)",
        description=(
            "Re-express the shipped tiny-shapes model in the SDXL family (two text "
            "encoders, pooled text and size conditioning), then adapt its encoders and "
            "UNet on the shapes world, reproducibly from --seed. --out gets a diffusion/ "
            "run folder and model/ (a saved model). --resume continues an interrupted "
            "run; --ship copies the weights into the package (the tiny-shapes-xl preset)."
        ),
    )
    add_settings_options(parser, SDXLShapesSettings)
    add = parser.add_argument
    add("--out", default=DEFAULT_XL_OUT, help=f"output folder (default: {DEFAULT_XL_OUT})")
    add("--resume", action="store_true", help="continue the run in --out")
    add("--ship", action="store_true",
        help="copy the trained weights into studio/pretrained/ (the tiny-shapes-xl preset)")
    parser.set_defaults(run=run_sdxl)


def _add_sd3_parser(methods):
    from studio.cli.settings_options import add_settings_options
    from studio.trainers.settings.sd3_shapes_settings import SD3ShapesSettings

    parser = methods.add_parser(
        "base-sd3",
        help="make the embedded tiny-shapes-sd3 model (the shapes world in the SD3 family)",
        description=(
            "Re-express tiny-shapes' text encoder as SD3's CLIP-L and CLIP-G (frozen), then "
            "train keras-hub's VAE, then its decoder alone, then the MMDiT (flow matching) on "
            "the shapes world, reproducibly from --seed. --out gets vae/, decoder/ and "
            "diffusion/ run folders and model/ "
            "(the weights and the measured latent shift and scale). --resume continues an "
            "interrupted run; --ship copies the weights into the package (the "
            "tiny-shapes-sd3 preset, whose VAE entry must hold the printed shift and scale)."
        ),
    )
    add_settings_options(parser, SD3ShapesSettings)
    add = parser.add_argument
    add("--out", default=DEFAULT_SD3_OUT, help=f"output folder (default: {DEFAULT_SD3_OUT})")
    add("--resume", action="store_true", help="continue the run in --out")
    add("--ship", action="store_true",
        help="copy the trained weights into studio/pretrained/ (the tiny-shapes-sd3 preset)")
    parser.set_defaults(run=run_sd3)


def _add_classifier_parser(methods):
    parser = methods.add_parser(
        "classifier",
        help="train the shapes-world attribute classifier that scores generated images",
        description=(
            "Train studio.evaluation.ShapesClassifier on rendered shapes-world images "
            "(reproducibly from --seed), print its accuracy on held-out renders, and save "
            "it to --out (or into the package with --ship)."
        ),
    )
    parser.add_argument("--steps", type=int, default=CLASSIFIER_STEPS,
                        help=f"(default: {CLASSIFIER_STEPS}, the shipped classifier's)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--out", default=os.path.join("runs", "shapes_classifier.weights.h5"))
    parser.add_argument("--ship", action="store_true",
                        help="write the weights into studio/pretrained/ instead of --out")
    parser.set_defaults(run=run_classifier)


def run_classifier(args):
    """Runs `studio train classifier`; returns the exit code."""
    from studio.evaluation.shapes_classifier import packaged_classifier_path
    from studio.evaluation.shapes_classifier_training import train_shapes_classifier
    from studio.files.atomic_write import atomic_path

    classifier, accuracy = train_shapes_classifier(steps=args.steps, seed=args.seed)
    print("Held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    path = packaged_classifier_path() if args.ship else args.out
    with atomic_path(path, suffix=".weights.h5") as staging:
        classifier.save_weights(staging)
    print(f"Classifier: {path}")
    return 0


def run_sdxl(args):
    """Runs `studio train base-xl`; returns the exit code."""
    from studio.cli.settings_options import given_settings
    from studio.trainers import (
        SDXLShapesSettings,
        pretrain_sdxl_shapes_model,
        ship_sdxl_shapes_model,
    )

    settings = SDXLShapesSettings(**given_settings(args, SDXLShapesSettings)).validate()
    model_folder = pretrain_sdxl_shapes_model(settings, args.out, resume=args.resume)
    print(f"Model: {model_folder}")
    if args.ship:
        for path in ship_sdxl_shapes_model(model_folder):
            print(f"Shipped: {path}")
    return 0


def run_sd3(args):
    """Runs `studio train base-sd3`; returns the exit code."""
    from studio.cli.settings_options import given_settings
    from studio.trainers import SD3ShapesSettings, pretrain_sd3_shapes_model, ship_sd3_shapes_model

    settings = SD3ShapesSettings(**given_settings(args, SD3ShapesSettings)).validate()
    model_folder = pretrain_sd3_shapes_model(settings, args.out, resume=args.resume)
    print(f"Model: {model_folder}")
    if args.ship:
        for path in ship_sd3_shapes_model(model_folder):
            print(f"Shipped: {path}")
    return 0


def run(args):
    """Runs `studio train base`; returns the exit code."""
    from studio.cli.settings_options import given_settings
    from studio.trainers import BaseModelSettings, pretrain_base_model, ship_base_model

    settings = BaseModelSettings(**given_settings(args, BaseModelSettings)).validate()
    model_folder = pretrain_base_model(settings, args.out, resume=args.resume)
    print(f"Model: {model_folder}")
    if args.ship:
        for path in ship_base_model(model_folder):
            print(f"Shipped: {path}")
    return 0
