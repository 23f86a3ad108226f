"""`studio demo`: textual inversion end to end on the embedded model, offline, in minutes.

With the shipped `tiny-shapes` model it renders a concept set (5 images of
the shapes world's unnamed concept, the cross, with captions), scores the
placeholder before training (its vectors start from a nearby word),
trains textual inversion with the studio's own trainer and run folder,
scores it again, and writes a before/after comparison grid.
"""

import os
import types

DEFAULT_OUT = "studio-demo"
PLACEHOLDER = "<cross>"
# The named shape that looks most like the cross: compact, axis-aligned.
DEFAULT_INIT_WORD = "square"
CONCEPT_IMAGES = 5
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


def render_concept_set(folder, count=CONCEPT_IMAGES, seed=0):
    """Writes `count` cross images with caption files into `folder`; returns their paths."""
    import numpy as np
    from PIL import Image

    from studio.datasets.shapes_world import ShapesWorld

    world = ShapesWorld(32)
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    colours = list(ShapesWorld.COLOURS)
    for index in range(count):
        scene = world.random_scene(rng, shape=ShapesWorld.UNNAMED_SHAPE,
                                   colour=colours[index % len(colours)])
        path = os.path.join(folder, f"cross_{index}.png")
        Image.fromarray(world.render(scene)).save(path)
        captions = [
            f"a {scene.colour} {{}} on a {scene.background} background",
            f"a {scene.size} {scene.colour} {{}}",
            f"a {scene.colour} {{}}",
        ]
        with open(os.path.join(folder, f"cross_{index}.txt"), "w", encoding="utf-8") as file:
            file.write("\n".join(captions) + "\n")
        paths.append(path)
    return paths


def comparison_grid(before, after, rows, columns):
    """One uint8 image: `before` on the left, `after` on the right, rows x columns each."""
    import numpy as np

    def block(images):
        images = np.asarray(images).reshape(rows, columns, *images.shape[1:])
        images = images.repeat(GRID_ZOOM, axis=2).repeat(GRID_ZOOM, axis=3)
        size = images.shape[2]
        return images.transpose(0, 2, 1, 3, 4).reshape(rows * size, columns * size, 3)

    left, right = block(before), block(after)
    gap = np.full((left.shape[0], GRID_GAP, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def run(args):
    """Runs `studio demo`; returns the exit code."""
    import time

    start = time.perf_counter()
    import numpy as np
    from PIL import Image

    from studio.evaluation.model_evaluator import UNNAMED_CONCEPT, ModelEvaluator
    from studio.trainers.run.run_directory import RunDirectory
    from studio.trainers.textual_inversion.textual_inversion_trainer import EMBEDDING_FILE
    from studio.cli.train_command import TEXTUAL_INVERSION_DEFAULTS, build_textual_inversion
    from studio.trainers.run.training_run import TrainingRun

    out = os.path.abspath(args.out)
    run_folder = os.path.join(out, "textual-inversion")
    if RunDirectory(run_folder).exists():
        raise ValueError(
            f"{out} already holds a demo run. Choose another --out or delete it. "
            f"Received: --out {args.out}"
        )
    concept_folder = os.path.join(out, "concept")
    render_concept_set(concept_folder, seed=args.seed)
    print(f"Concept set: {CONCEPT_IMAGES} images of a shape no word names, in {concept_folder}")

    settings = dict(TEXTUAL_INVERSION_DEFAULTS, **DEMO_TI_SETTINGS)
    settings.update(model="tiny-shapes", data=concept_folder, token=PLACEHOLDER,
                    init_word=args.init_word, steps=args.steps, seed=args.seed)
    options = types.SimpleNamespace(weights=None, vocabulary=None, jit=True,
                                    cache_dir=os.path.join(out, "latent-cache"))
    trainer, dataset = build_textual_inversion(settings, options)
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
    run_directory.create(settings)
    summary = TrainingRun(trainer, run_directory, settings["steps"],
                          save_every=settings["save_every"],
                          log_every=settings["log_every"]).fit(dataset)

    after_images = grid_images()
    after = evaluator.score_concept(PLACEHOLDER, UNNAMED_CONCEPT, SCORE_IMAGES, seed=args.seed)
    print(f"After {summary['steps']} steps: concept fidelity {after['concept_fidelity']:.2f}, "
          f"editability {after['editability']:.2f}")

    grid_path = os.path.join(out, "before_after.png")
    grid = comparison_grid(before_images, after_images, len(prompts), GRID_SEEDS)
    Image.fromarray(grid).save(grid_path + ".tmp.png")
    os.replace(grid_path + ".tmp.png", grid_path)
    scores = {"before": before, "after": after, "steps": summary["steps"],
              "init_word": args.init_word, "prompts": prompts,
              "seconds": round(time.perf_counter() - start, 1)}
    _write_json(os.path.join(out, "scores.json"), scores)
    print(f"Grid (rows: {', '.join(prompts)}; columns: seeds {args.seed}..{args.seed + GRID_SEEDS - 1}; "
          f"left before, right after): {grid_path}")
    print(f"Embedding: {run_directory.file(EMBEDDING_FILE)}")
    print(f"TensorBoard logs: {run_directory.logs_path}  (tensorboard --logdir {run_directory.logs_path})")
    print(f"Scores: {os.path.join(out, 'scores.json')}  ({scores['seconds']:.0f} s in all)")
    return 0


def _write_json(path, data):
    import json

    from studio.files.atomic_write import write_file_atomically

    write_file_atomically(path, json.dumps(data, indent=2).encode("utf-8"))
