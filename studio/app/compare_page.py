"""Compare: one grid, rows of models (base, checkpoints, embeddings, LoRAs), columns of seeds or prompts."""

import dataclasses
import io
import os

import numpy as np
import streamlit as st

from studio.app.app_state import data_folder
from studio.app.comparison_scores import EVALUATION_MODULE, score_comparison
from studio.app.concept_grid import CONCEPT_FIELD
from studio.app.file_library import (
    embedding_files,
    embedding_tokens,
    files_for_model,
    lora_files,
    picker_label,
    training_images,
)
from studio.app.model_catalog import ModelChoice
from studio.app.model_picker import pick_model
from studio.app.page_errors import errors_as_messages
from studio.grids import draw_grid

BASE_ROW = "base, before training"
MAX_COLUMNS = 8
MAX_ROWS = 12
SCORES_HELP = (
    "What the scores mean (the shapes world's classifier reads each image): "
    "**prompt accuracy** — the share of a row's images that show every attribute (shape, "
    "colour, pattern) the prompt names; it checks the prompt's words only, not the concept. "
    "**like the references** — the share that show what the run's training images show "
    "(their most common shape, colour and pattern): the concept's fidelity. "
    "**reads as** — what the classifier sees most often, with its count."
)


@dataclasses.dataclass(frozen=True)
class GridRow:
    """One row: a label, the embedding or LoRA file (or neither for the base model)."""

    label: str
    embedding: str = None
    lora: str = None
    file: object = None  # The `LibraryFile`, for the run's training images.


def render():
    st.title("Compare")
    st.caption("Each row is a model — the base model before training, a run's checkpoints, "
               "embeddings, LoRA files — and each column a seed or a prompt. Every cell of a "
               "column uses the same seed, so differences come from the rows alone.")
    data = data_folder()
    settings, output = st.columns([2, 3], gap="large")
    with settings:
        model = pick_model("compare_model")
        rows = _pick_rows(data, model)
        st.text_input(
            "Prompt", key="compare_prompt", value="a photo of {concept}",
            help="{concept} becomes each row's token; in the base and LoRA rows, the words "
            "below.")
        plain = st.text_input("Words for {concept} in rows without a token",
                              value=model.concept_words if model else "a toy",
                              key="compare_plain_words")
        mode = st.segmented_control("Columns", ["Seeds", "Prompts", "X/Y plot"],
                                    default="Seeds", key="compare_mode")
        if mode == "X/Y plot":
            _xy_section(model, rows, plain)
            with output:
                _show_grid()
                _grid_history(data)
            return
        if mode == "Prompts":
            prompts_text = st.text_area("One prompt per column", key="compare_prompts",
                                        value="a photo of {concept}\n{concept} on a beach")
            seed = st.number_input("Seed", 0, 2**32 - 1, 1, key="compare_seed")
            columns = [(line.strip(), int(seed)) for line in prompts_text.splitlines()
                       if line.strip()]
        else:
            seeds_text = st.text_input("Seeds (comma separated)", value="1, 2, 3",
                                       key="compare_seeds")
            prompt = st.session_state.get("compare_prompt", "")
            columns = []
            with errors_as_messages("Reading the seeds"):
                columns = [(prompt, seed) for seed in _parse_seeds(seeds_text)]
        row = st.columns(2)
        steps = row[0].number_input("Steps", 1, 200, 20, key="compare_steps")
        guidance = row[1].number_input("Guidance", 0.0, 30.0, 7.5, 0.5, key="compare_guidance")
        go = st.button("Make the grid", type="primary", icon=":material/grid_view:",
                       disabled=model is None or not rows or not columns, width="stretch")
    with output:
        if go:
            with errors_as_messages("Making the grid"):
                _make_grid(data, model.name, rows, columns, plain, int(steps), float(guidance),
                           mode)
        _show_grid()
        _grid_history(data)


# The X/Y plot's axes: label on the page -> `studio.grids.GridAxis` kind. The
# file axes are picked from lists: a Checkpoint axis is the first row's run's
# checkpoints (embeddings or LoRA files), an Embedding axis the library's
# embeddings; the others are typed.
CHECKPOINT_AXIS = "Checkpoint"
EMBEDDING_AXIS = "Embedding"
XY_AXES = {"CFG": "cfg", "Steps": "steps", "Sampler": "sampler", "Seed": "seed",
           "LoRA strength": "lora_strength", CHECKPOINT_AXIS: None, EMBEDDING_AXIS: "embedding"}
XY_DEFAULTS = {"CFG": "3, 7.5, 12", "Steps": "5, 10, 20", "Sampler": "ddim, euler",
               "Seed": "1, 2, 3", "LoRA strength": "0, 0.5, 1"}
MAX_AXIS_VALUES = 8
NO_EMBEDDING = "none (the words for {concept})"


def _xy_section(model, rows, plain_words):
    """An X/Y plot of the first row's model over two settings (CFG × sampler, ...)."""
    from studio.app.concept_grid import ConceptGrid
    from studio.pipelines import GenerationSettings

    data = data_folder()
    first = rows[0] if rows else None
    axes = list(XY_AXES)
    row = st.columns(2)
    x_axis = row[0].selectbox("X axis", axes, index=0, key="compare_x_axis")
    y_axis = row[1].selectbox("Y axis", axes, index=2, key="compare_y_axis")
    picked = {}
    for letter, label, column in (("X", x_axis, row[0]), ("Y", y_axis, row[1])):
        with column, errors_as_messages(f"Reading the {letter} axis"):
            picked[letter] = _axis(letter, label, column, first, data, model)
    st.caption("Samplers: " + ", ".join(ModelChoice.sampler_names(model))
               + ". The other settings come from "
               "the fields above; the first row picked is the model plotted, and "
               "{concept} becomes each cell's embedding tokens.")
    row = st.columns(3)
    steps = row[0].number_input("Steps", 1, 200, 20, key="compare_steps")
    guidance = row[1].number_input("Guidance", 0.0, 30.0, 7.5, 0.5, key="compare_guidance")
    seed = row[2].number_input("Seed", 0, 2**32 - 1, 1, key="compare_seed")
    grid = None
    if first is not None and len(picked) == 2:
        with errors_as_messages("Setting up the X/Y plot"):
            x, y = picked["X"], picked["Y"]
            kinds = {x.kind, y.kind}
            # A file axis of the first row's kind replaces the row's own file.
            embeddings = (first.embedding,) if first.embedding and "embedding" not in kinds else ()
            loras = ((first.lora, 1.0),) if first.lora and "lora" not in kinds else ()
            if "lora_strength" in kinds and not loras and "lora" not in kinds:
                raise ValueError("A LoRA strength axis varies a LoRA's strength: pick a LoRA "
                                 "file as the first row.")
            settings = GenerationSettings(
                st.session_state.get("compare_prompt", ""), steps=int(steps),
                guidance_scale=float(guidance), seed=int(seed),
                model=model.name if model else None, loras=loras, embeddings=embeddings)
            grid = ConceptGrid(settings, x, y, plain_words=plain_words)
    go = st.button("Make the X/Y plot", type="primary", icon=":material/grid_on:",
                   disabled=model is None or grid is None, width="stretch")
    if go:
        with errors_as_messages("Making the X/Y plot"):
            _make_xy_plot(data, grid)


def _axis(letter, label, column, first, data, model):
    """The `GridAxis` of an axis, its values typed or picked in `column`."""
    from studio.grids import GridAxis

    if label == CHECKPOINT_AXIS:
        if first is None or first.file is None or not first.file.run:
            raise ValueError("A Checkpoint axis plots one run's checkpoints: pick a run's "
                             "embedding or LoRA file as the first row.")
        listed = embedding_files(data) if first.embedding else lora_files(data)
        mine = [file for file in listed if file.run == first.file.run]
        # Steps ascending, the final result last.
        mine.sort(key=lambda file: (file.step is None, file.step or 0))
        options = {("final" if file.step is None else f"step {file.step}"): file.path
                   for file in mine}
        chosen = column.multiselect(
            f"{letter}: checkpoints of {first.file.run}", list(options),
            default=list(options)[-MAX_AXIS_VALUES:], max_selections=MAX_AXIS_VALUES,
            key=f"compare_{letter}_checkpoints_{first.file.run}")
        return GridAxis("embedding" if first.embedding else "lora",
                        [options[name] for name in chosen])
    if label == EMBEDDING_AXIS:
        options = {NO_EMBEDDING: "none"}
        options.update((picker_label(file), file.path) for file in files_for_model(
            embedding_files(data, include_checkpoints=False), model))
        chosen = column.multiselect(f"{letter}: embeddings", list(options),
                                    default=list(options)[:3], max_selections=MAX_AXIS_VALUES,
                                    key=f"compare_{letter}_embeddings")
        return GridAxis("embedding", [options[name] for name in chosen])
    default = XY_DEFAULTS[label]
    if label == "Sampler":  # Two the model samples with (SD3: flow-matching Euler alone).
        default = ", ".join(ModelChoice.sampler_names(model)[:2])
    text = column.text_input(f"{letter} values", value=default,
                             key=f"compare_{letter.lower()}_{label}")
    axis = GridAxis.from_text(XY_AXES[label], text)
    if len(axis.values) > MAX_AXIS_VALUES:
        raise ValueError(f"At most {MAX_AXIS_VALUES} {label} values. "
                         f"Received: {len(axis.values)}")
    return axis


def _make_xy_plot(data, grid):
    """Generates `grid` (a `ParameterGrid`) on the app's cached pipelines and keeps it
    under `outputs/grids/` with A1111's X/Y plot infotext (`studio grid --from-png`
    draws it again)."""
    from studio.app.cached_generation_runner import CachedGenerationRunner
    from studio.images import next_image_index

    bar = st.progress(0.0, text="Generating the plot…")

    def progress(done, total):
        bar.progress(done / total, text=f"Image {done} of {total}")

    sheet = grid.generate(CachedGenerationRunner(), callback=progress)
    bar.empty()
    folder = os.path.join(data.outputs, GRIDS_FOLDER)
    os.makedirs(folder, exist_ok=True)
    path = sheet.save(os.path.join(folder, f"{next_image_index(folder):05d}-xy.png"))
    with open(path, "rb") as file:
        st.session_state["comparison"] = (file.read(), None)


def _parse_seeds(text):
    seeds = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(f"seeds are whole numbers separated by commas, such as 1, 2, 3. "
                             f"Received: {part!r}")
        seeds.append(int(part))
    return seeds[:MAX_COLUMNS]


def _pick_rows(data, model):
    """The rows picked: the base model, then embeddings and LoRAs that load into `model`."""
    options = {BASE_ROW: GridRow(BASE_ROW)}
    for file in files_for_model(embedding_files(data), model):
        options[f"embedding · {picker_label(file)}"] = GridRow(
            f"{file.label}", embedding=file.path, file=file)
    for file in files_for_model(lora_files(data), model, lora=True):
        options[f"LoRA · {file.label}"] = GridRow(f"LoRA {file.label}", lora=file.path, file=file)
    default = [BASE_ROW] + [label for label in options if label.endswith("· final")][:2]
    chosen = st.multiselect("Rows", list(options), default=default, key="compare_rows",
                            max_selections=MAX_ROWS,
                            help="A run's checkpoints are listed by step.")
    return [options[label] for label in chosen]


def _make_grid(data, model, rows, columns, plain_words, steps, guidance, mode):
    """Each row a one-row `ParameterGrid` (its file, its {concept} words), drawn as one grid."""
    from studio.app.cached_generation_runner import CachedGenerationRunner
    from studio.grids import GridAxis, ParameterGrid
    from studio.pipelines import GenerationSettings

    if not columns:
        raise ValueError("Give at least one seed or prompt for the columns.")
    if len(columns) > MAX_COLUMNS:
        raise ValueError(f"At most {MAX_COLUMNS} columns. Received: {len(columns)}")
    runner = CachedGenerationRunner()
    images, prompts, labels = [], {}, []
    bar = st.progress(0.0, text="Generating the grid…")
    total = len(rows) * len(columns)
    for row_index, row in enumerate(rows):
        token = _token_of(row.embedding) if row.embedding else plain_words
        row_prompts = [template.replace(CONCEPT_FIELD, token) for template, _ in columns]
        settings = GenerationSettings(
            row_prompts[0], steps=steps, guidance_scale=guidance, seed=columns[0][1],
            model=model, loras=((row.lora, 1.0),) if row.lora else (),
            embeddings=(row.embedding,) if row.embedding else ())
        axis = (GridAxis("prompt", row_prompts) if mode == "Prompts"
                else GridAxis("seed", [seed for _, seed in columns]))

        def progress(done, _, start=row_index * len(columns)):
            bar.progress((start + done) / total, text=f"Image {start + done} of {total}")

        sheet = ParameterGrid(settings, axis).generate(runner, callback=progress)
        images.append(sheet.cells[0][0])
        prompts[row.label] = row_prompts
        labels.append(row.label)
    bar.empty()
    column_labels = [f"seed {seed}" if mode != "Prompts" else template
                     for template, seed in columns]
    grid = draw_grid(images, labels, column_labels)
    # "Like the training images": the training images of the first run in the grid.
    size = images[0][0].shape[0]
    references = next((found for found in (training_images(row.file, data, size)
                                           for row in rows if row.file is not None)
                       if found is not None), None)
    scores = score_comparison({label: np.stack(cells) for label, cells in zip(labels, images)},
                              prompts, reference_images=references, model=model)
    png = _save_grid(data, grid, {
        "model": model, "rows": labels, "columns": column_labels, "steps": steps,
        "guidance": guidance, "prompts": prompts})
    st.session_state["comparison"] = (png, scores)


GRIDS_FOLDER = "grids"
# The PNG text chunk holding a grid's parameters (JSON).
GRID_PARAMETERS_CHUNK = "comparison"


def _save_grid(data, grid, parameters):
    """Saves the grid with its parameters (a PNG text chunk) under `outputs/grids/`; returns
    the PNG bytes."""
    import json

    from PIL import PngImagePlugin

    from studio.files.atomic_write import write_file_atomically
    from studio.images import next_image_index

    info = PngImagePlugin.PngInfo()
    info.add_text(GRID_PARAMETERS_CHUNK, json.dumps(parameters))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", pnginfo=info)
    folder = os.path.join(data.outputs, GRIDS_FOLDER)
    os.makedirs(folder, exist_ok=True)
    write_file_atomically(os.path.join(folder, f"{next_image_index(folder):05d}-grid.png"),
                          buffer.getvalue())
    return buffer.getvalue()


def _token_of(path):
    return " ".join(embedding_tokens(path))


def _show_grid():
    comparison = st.session_state.get("comparison")
    if not comparison:
        st.info("Choose rows and columns, then make the grid.", icon=":material/grid_view:")
        return
    png, scores = comparison
    st.image(io.BytesIO(png), width="stretch")
    st.download_button("Download the grid (PNG)", png, file_name="comparison.png",
                       mime="image/png", icon=":material/download:")
    if scores:
        import pandas as pd

        st.markdown("**Scores**")
        st.dataframe(pd.DataFrame(scores).T, width="stretch")
        st.caption(SCORES_HELP)
    else:
        st.caption("Scores apply to grids of the shapes-world model (`tiny-shapes`): its "
                   f"classifier (`{EVALUATION_MODULE}`) reads what each image shows.")


def _xy_caption(path):
    """An X/Y plot's axes, from its infotext ("CFG Scale: 3, 7.5 × Sampler: ddim, euler")."""
    from studio.images import read_parameters

    try:
        parameters = read_parameters(path)
    except (OSError, ValueError):
        parameters = None
    fields = parameters.extra if parameters is not None else {}
    axes = [f"{fields[f'{letter} Type']}: {fields.get(f'{letter} Values', '')}"
            for letter in ("X", "Y", "Z") if f"{letter} Type" in fields]
    return " × ".join(axes) or "no parameters"


def _grid_history(data, shown=4):
    """The latest grids made (kept in `outputs/grids/` with their parameters)."""
    import json

    from PIL import Image

    folder = os.path.join(data.outputs, GRIDS_FOLDER)
    try:
        names = sorted((n for n in os.listdir(folder) if n.endswith(".png")), reverse=True)
    except OSError:
        return
    if len(names) < 2:
        return
    with st.expander(f"Earlier grids ({len(names)})"):
        for name in names[:shown]:
            path = os.path.join(folder, name)
            try:
                with Image.open(path) as image:
                    parameters = json.loads(image.text.get(GRID_PARAMETERS_CHUNK) or "{}")
            except (OSError, ValueError):
                parameters = {}
            st.image(path, width="stretch")
            if not parameters:
                st.caption(f"{name}: {_xy_caption(path)}")
                continue
            st.caption(f"{name}: {', '.join(parameters.get('rows', []))} · "
                       f"{', '.join(map(str, parameters.get('columns', [])))} · "
                       f"{parameters.get('steps', '?')} steps, guidance "
                       f"{parameters.get('guidance', '?')}")
