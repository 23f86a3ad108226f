"""`studio demo`: textual inversion end to end on the embedded model, offline, in minutes.

With the shipped `tiny-shapes` model it renders a concept set (5 images of
the shapes world's unnamed concept, the cross, with captions), scores the
placeholder before training (its vectors start from a nearby word),
trains textual inversion with the studio's own trainer and run folder,
scores it again, and writes a before/after comparison grid.
"""

import os

from studio.errors import InvalidInputError

DEFAULT_OUT = "studio-demo"
PLACEHOLDER = "<cross>"
# The named shape that looks most like the cross: compact, axis-aligned.
DEFAULT_INIT_WORD = "square"
GRID_SEEDS = 4
# Each grid cell is upscaled this many times (nearest neighbour): 32 px is small.
GRID_ZOOM = 4
GRID_GAP = 8
DEMO_TI_SETTINGS = {
    # On the 20k-step weights, 300 steps reached concept fidelity 0.68-0.78
    # depending on the seed, 600 reached 0.97; on the shipped weights 600
    # steps reach 0.90, in 84 s on 2 CPU cores.
    "steps": 600,
    "lr": 2e-2,
    "batch_size": 5,
    # 0: encode every step. The latent cache assumes SD's 8x VAE; this one is 4x,
    # and it is cheap anyway.
    "latent_variants": 0,
    "save_every": 100,
    "log_every": 10,
}
# Images per score (fidelity; editability): enough to tell 0.2 from 0.8.
SCORE_IMAGES = 40


def add_parser(subparsers):
    """Registers `studio demo`."""
    parser = subparsers.add_parser(
        "demo",
        help="teach the embedded model a concept (textual inversion) in a few minutes",
        description=(
            "Offline, with the shipped tiny-shapes model: render 5 images of a shape no "
            "word names, train textual inversion for " + PLACEHOLDER + ", print concept "
            "fidelity before and after, and write a before/after grid, the embedding and "
            "TensorBoard logs into --out."
        ),
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--init-word", default=DEFAULT_INIT_WORD,
                        help=f"word the placeholder starts from (default: {DEFAULT_INIT_WORD})")
    parser.add_argument("--steps", type=int, default=DEMO_TI_SETTINGS["steps"],
                        help=f"textual-inversion steps (default: {DEMO_TI_SETTINGS['steps']})")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.set_defaults(run=run)
    return parser


def comparison_grid(before, after, rows, columns):
    """One uint8 image: `before` on the left, `after` on the right, rows x columns each."""
    import numpy as np

    from studio.images.grid_style import GridStyle
    from studio.images.image_grid import make_image_grid

    def block(images):
        if len(images) != rows * columns:
            raise InvalidInputError(
                f"Expected rows * columns = {rows * columns} images a side. "
                f"Received: {len(images)}"
            )
        height, width = np.asarray(images).shape[1:3]
        return make_image_grid(
            images, columns, cell_size=(width * GRID_ZOOM, height * GRID_ZOOM),
            style=GridStyle(gap=0, margin=0),
        )

    halves = GridStyle(gap=GRID_GAP, margin=0, background=(255, 255, 255))
    return np.asarray(make_image_grid([block(before), block(after)], 2, style=halves))


def run(args):
    """Runs `studio demo`; returns the exit code."""
    import time

    start = time.perf_counter()
    import numpy as np
    from PIL import Image

    from studio.evaluation.concept_set import CONCEPT_IMAGES, render_concept_set
    from studio.evaluation.model_evaluator import UNNAMED_CONCEPT, ModelEvaluator
    from studio.files.atomic_write import atomic_file
    from studio.files.json_file import write_json
    from studio.trainers.run.run_directory import RunDirectory
    from studio.trainers.textual_inversion.textual_inversion_trainer import EMBEDDING_FILE
    from studio.trainers import TextualInversionSettings, build_textual_inversion
    from studio.trainers.run.training_run import TrainingRun

    out = os.path.abspath(args.out)
    run_folder = os.path.join(out, "textual-inversion")
    if RunDirectory(run_folder).exists():
        raise InvalidInputError(
            f"{out} already holds a demo run. Choose another --out or delete it. "
            f"Received: --out {args.out}"
        )
    concept_folder = os.path.join(out, "concept")
    render_concept_set(concept_folder, CONCEPT_IMAGES, seed=args.seed)
    print(f"Concept set: {CONCEPT_IMAGES} images of a shape no word names, in {concept_folder}")

    settings = TextualInversionSettings(**dict(
        DEMO_TI_SETTINGS, model="tiny-shapes", data=concept_folder, token=PLACEHOLDER,
        init_word=args.init_word, steps=args.steps, seed=args.seed,
        cache_dir=os.path.join(out, "latent-cache"),
    ))
    trainer, dataset = build_textual_inversion(settings)
    evaluator = ModelEvaluator(trainer.sampling_backbone())

    prompts = [f"a {PLACEHOLDER}", f"a green {PLACEHOLDER}",
               f"a blue {PLACEHOLDER} on a white background"]

    def grid_images():
        return np.concatenate([
            evaluator.generate([prompt] * GRID_SEEDS, seed=args.seed) for prompt in prompts
        ])

    before_images = grid_images()
    before = evaluator.score_concept(PLACEHOLDER, UNNAMED_CONCEPT, SCORE_IMAGES, seed=args.seed)
    print(f"Before (from '{args.init_word}'): concept fidelity {before['concept_fidelity']:.2f}, "
          f"editability {before['editability']:.2f}")

    run_directory = RunDirectory(run_folder)
    run_directory.create(settings.to_config())
    summary = TrainingRun(trainer, run_directory, settings.steps,
                          save_every=settings.save_every,
                          log_every=settings.log_every).fit(dataset)

    after_images = grid_images()
    after = evaluator.score_concept(PLACEHOLDER, UNNAMED_CONCEPT, SCORE_IMAGES, seed=args.seed)
    print(f"After {summary['steps']} steps: concept fidelity {after['concept_fidelity']:.2f}, "
          f"editability {after['editability']:.2f}")

    grid_path = os.path.join(out, "before_after.png")
    grid = comparison_grid(before_images, after_images, len(prompts), GRID_SEEDS)
    with atomic_file(grid_path) as file:
        Image.fromarray(grid).save(file, format="PNG")
    scores = {"before": before, "after": after, "steps": summary["steps"],
              "init_word": args.init_word, "prompts": prompts,
              "seconds": round(time.perf_counter() - start, 1)}
    write_json(os.path.join(out, "scores.json"), scores)
    print(f"Grid (rows: {', '.join(prompts)}; columns: seeds {args.seed}..{args.seed + GRID_SEEDS - 1}; "
          f"left before, right after): {grid_path}")
    print(f"Embedding: {run_directory.file(EMBEDDING_FILE)}")
    print(f"TensorBoard logs: {run_directory.logs_path}  (tensorboard --logdir {run_directory.logs_path})")
    print(f"Scores: {os.path.join(out, 'scores.json')}  ({scores['seconds']:.0f} s in all)")
    return 0
