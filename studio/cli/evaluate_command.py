"""`studio evaluate`: score the embedded model and fine-tuning on it with the shipped classifier."""

import json
import os
import time


def add_parser(subparsers):
    """Registers `studio evaluate base|dreambooth|reference`."""
    evaluate = subparsers.add_parser(
        "evaluate", help="score a shapes-world model with the shipped attribute classifier")
    kinds = evaluate.add_subparsers(dest="evaluation", metavar="WHAT")
    base = kinds.add_parser("base", help="prompt accuracy on held-out prompt combinations")
    base.add_argument("--model", default="tiny-shapes",
                      help="tiny-shapes or a folder saved by `studio train base`")
    base.add_argument("--images-per-combination", type=int, default=25,
                      help="images for each held-out (shape, colour, background) (default: 25)")
    base.add_argument("--seed", type=int, default=0,
                      help="the first image's seed; image i uses seed + i, so seeds closer "
                      "than the image count (225 by default) share images (default: 0)")
    base.set_defaults(run=run_base)
    dreambooth = kinds.add_parser(
        "dreambooth", help="DreamBooth on the world's instance: instance fidelity, class diversity")
    dreambooth.add_argument("--out", required=True, help="folder for the run")
    dreambooth.add_argument("--model", default="tiny-shapes",
                            help="tiny-shapes or a folder saved by `studio train base`")
    dreambooth.add_argument("--no-prior-preservation", dest="prior", action="store_false")
    dreambooth.add_argument("--steps", type=int, default=None)
    dreambooth.add_argument("--seed", type=int, default=0)
    dreambooth.set_defaults(run=run_dreambooth)
    reference = kinds.add_parser(
        "reference", help="whether CLIP-I / CLIP-T / DINO scores can be computed here")
    reference.set_defaults(run=run_reference)
    evaluate.set_defaults(run=lambda args: evaluate.print_help() or 2)
    return evaluate


def run_base(args):
    from studio.evaluation.model_evaluator import ModelEvaluator
    from studio.interop import load_backbone

    start = time.perf_counter()
    scores = ModelEvaluator(load_backbone(args.model)).score_base(
        args.images_per_combination, seed=args.seed)
    scores["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(scores, indent=2))
    return 0


def run_dreambooth(args):
    from studio.evaluation.dreambooth_evaluation import evaluate_dreambooth
    from studio.files.json_file import write_json

    start = time.perf_counter()
    scores = evaluate_dreambooth(args.out, prior_preservation=args.prior, steps=args.steps,
                                 seed=args.seed, model=args.model)
    scores["seconds"] = round(time.perf_counter() - start, 1)
    write_json(os.path.join(args.out, "scores.json"), scores)
    print(json.dumps(scores, indent=2))
    return 0


def run_reference(args):
    from studio.evaluation.reference_metrics import reference_metrics_status

    status = reference_metrics_status()
    print(json.dumps(status, indent=2))
    return 0
