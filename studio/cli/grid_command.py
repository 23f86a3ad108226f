"""`studio grid`: an X/Y/Z plot over seeds, prompts, CFG, steps, samplers, models and concept files."""

import os
import sys

from studio.cli.generation_options import (
    add_generation_options,
    given_settings,
    print_notes,
    read_png_parameters,
    runner_of,
    settings_from_options,
)
from studio.errors import InvalidInputError

COMMAND = "grid"
# What `--x-type` takes beside the library's kinds: A1111's name for a model axis.
CHECKPOINT_KIND = "checkpoint"


def add_parser(subparsers):
    from studio.grids import AXIS_KINDS

    kinds = ", ".join(list(AXIS_KINDS) + [CHECKPOINT_KIND])
    parser = subparsers.add_parser(
        "grid",
        help="draw an X/Y/Z plot: one setting per axis",
        description=(
            "Generate one image per combination of the axes' values and draw them as one "
            "labelled sheet (AUTOMATIC1111's X/Y/Z plot). The PNG carries the first "
            "image's parameters and the axes (`X Type`, `X Values`, ...), so "
            "`studio grid --from-png SHEET` makes it again. A run folder as a value of "
            "a `lora`, `embedding` or `checkpoint` axis stands for each of its checkpoints' "
            "files and its result."
        ),
    )
    add_generation_options(parser, "draw the grid", several_prompts=False)
    for letter in "xyz":
        parser.add_argument(f"--{letter}-type", default=None, metavar="KIND",
                            help=f"what the {'columns' if letter == 'x' else 'rows' if letter == 'y' else 'sheets side by side'} "
                            f"vary: {kinds}" + (" (required without --from-png)" if letter == "x" else ""))
        parser.add_argument(f"--{letter}-values", default=None, metavar="A,B,...",
                            help=f"the {letter.upper()} values, comma separated (a value with a "
                            "comma in double quotes); for Prompt S/R the first is the text replaced")
    parser.add_argument("--out", required=True, help="the grid's PNG file")
    parser.set_defaults(run=run)
    return parser


def run(args):
    from studio.grids import ParameterGrid

    if not args.out.lower().endswith(".png"):
        raise InvalidInputError(f"`--out` is the grid's PNG file. Received: --out {args.out}")
    if args.from_png:
        grid, notes = ParameterGrid.from_parameters(
            read_png_parameters(args.from_png),
            overrides=given_settings(args),
            search_folders=args.concepts_dir,
        )
        print_notes(COMMAND, args.from_png, notes)
        if args.lora_scale is not None:
            grid.settings.loras = tuple((p, args.lora_scale) for p, _ in grid.settings.loras)
            grid.lora_strength = args.lora_scale
        axes = {"x": grid.x, "y": grid.y, "z": grid.z}
    else:
        settings = settings_from_options(args, COMMAND)
        grid = None
        axes = {"x": None, "y": None, "z": None}
    for letter in "xyz":
        kind, values = getattr(args, f"{letter}_type"), getattr(args, f"{letter}_values")
        if (kind is None) != (values is None):
            raise InvalidInputError(
                f"--{letter}-type and --{letter}-values go together. Received: "
                f"--{letter}-type {kind}, --{letter}-values {values}"
            )
        if kind is not None:
            axes[letter] = _axis(kind, values)
    if axes["x"] is None:
        raise InvalidInputError(
            "A grid needs an X axis: give --x-type KIND --x-values A,B,... Received: none")
    if grid is None:
        grid = ParameterGrid(settings, axes["x"], axes["y"], axes["z"],
                             lora_strength=1.0 if args.lora_scale is None else args.lora_scale)
    else:
        grid.x, grid.y, grid.z = axes["x"], axes["y"], axes["z"]
    depth, rows, columns = grid.shape

    from tqdm import tqdm

    from studio.cli.output_location import writing_to

    runner = runner_of(args, COMMAND)
    with tqdm(total=depth * rows * columns, desc="Generating", unit="image") as progress:
        sheet = grid.generate(runner, callback=lambda done, total: progress.update(1))
    with writing_to(args.out):
        sheet.save(args.out)
    print(args.out)
    return 0


def _axis(kind, text):
    """A `GridAxis`; a run folder among a file axis' values stands for its checkpoints' files."""
    from studio.grids import GridAxis
    from studio.grids.grid_axis import split_values

    values = [value.strip() for value in split_values(text) if value.strip()]
    expanded, kinds = [], set()
    for value in values:
        files = _run_files(value) if kind in ("lora", "embedding", CHECKPOINT_KIND) else None
        if files:
            expanded += [path for _, path in files]
            kinds.add("lora" if files[0][1].endswith("lora.safetensors") else "embedding")
        else:
            expanded.append(value)
            kinds.add("model" if kind == CHECKPOINT_KIND else kind)
    if len(kinds) > 1:
        raise InvalidInputError(
            f"A {kind} axis varies one kind of file; these values mix {sorted(kinds)}. "
            f"Received: {text!r}"
        )
    return GridAxis(kinds.pop(), expanded)


def _run_files(path):
    """`[(step, file)]` of a training run folder's checkpoints and result, or None."""
    from studio.trainers.run.run_directory import RunDirectory

    if not os.path.isdir(path):
        return None
    run = RunDirectory(path)
    if not os.path.isfile(run.config_path):
        return None
    files = list(run.checkpoint_result_files())
    final = run.result_file()
    if final:
        files.append((None, final))
    if not files:
        print(f"studio {COMMAND}: warning: {path} is a run folder without embedding or "
              "LoRA files", file=sys.stderr)
    return files or None
