"""Compare: one grid, rows of models (base, checkpoints, embeddings, LoRAs), columns of seeds or prompts."""

import dataclasses
import io
import os

import numpy as np
import streamlit as st

from studio.app.app_state import data_folder
from studio.app.comparison_scores import EVALUATION_MODULE, score_comparison
from studio.app.file_library import embedding_files, lora_files
from studio.app.model_picker import pick_model
from studio.app.page_errors import errors_as_messages
from studio.grids import draw_grid

BASE_ROW = "base, before training"
CONCEPT_FIELD = "{concept}"
MAX_COLUMNS = 8
MAX_ROWS = 12


@dataclasses.dataclass(frozen=True)
class GridRow:
    """One row: a label, the embedding or LoRA file (or neither for the base model)."""

    label: str
    embedding: str = None
    lora: str = None


def render():
    st.title("Compare")
    st.caption("Each row is a model — the base model before training, a run's checkpoints, "
               "embeddings, LoRA files — and each column a seed or a prompt. Every cell of a "
               "column uses the same seed, so differences come from the rows alone.")
    data = data_folder()
    settings, output = st.columns([2, 3], gap="large")
    with settings:
        model = pick_model("compare_model")
        rows = _pick_rows(data)
        st.text_input(
            "Prompt", key="compare_prompt", value="a photo of {concept}",
            help="{concept} becomes each row's token; in the base and LoRA rows, the words "
            "below.")
        plain = st.text_input("Words for {concept} in rows without a token",
                              value=model.concept_words if model else "a toy",
                              key="compare_plain_words")
        mode = st.segmented_control("Columns", ["Seeds", "Prompts"], default="Seeds",
                                    key="compare_mode")
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
            columns = [(prompt, seed) for seed in _parse_seeds(seeds_text)]
        row = st.columns(2)
        steps = row[0].number_input("Steps", 1, 200, 20, key="compare_steps")
        guidance = row[1].number_input("Guidance", 0.0, 30.0, 7.5, 0.5, key="compare_guidance")
        go = st.button("Make the grid", type="primary", icon=":material/grid_view:",
                       disabled=model is None or not rows, width="stretch")
    with output:
        if go:
            with errors_as_messages("Making the grid"):
                _make_grid(model.name, rows, columns, plain, int(steps), float(guidance), mode)
        _show_grid()


def _parse_seeds(text):
    seeds = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            st.error(f"Seeds are whole numbers separated by commas. Received: {part!r}")
            return []
        seeds.append(int(part))
    return seeds[:MAX_COLUMNS]


def _pick_rows(data):
    options = {BASE_ROW: GridRow(BASE_ROW)}
    for file in embedding_files(data):
        options[f"embedding · {file.label}"] = GridRow(f"{file.label}", embedding=file.path)
    for file in lora_files(data):
        options[f"LoRA · {file.label}"] = GridRow(f"LoRA {file.label}", lora=file.path)
    default = [BASE_ROW] + [label for label in options if label.endswith("· final")][:2]
    chosen = st.multiselect("Rows", list(options), default=default, key="compare_rows",
                            max_selections=MAX_ROWS,
                            help="A run's checkpoints are listed by step.")
    return [options[label] for label in chosen]


def _make_grid(model, rows, columns, plain_words, steps, guidance, mode):
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
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    scores = score_comparison({label: np.stack(cells) for label, cells in zip(labels, images)},
                              prompts, model=model)
    st.session_state["comparison"] = (buffer.getvalue(), scores)


@st.cache_data(show_spinner=False, max_entries=64)
def _first_placeholder(path, mtime):
    from studio.embeddings import load_embedding

    return " ".join(load_embedding(path).placeholders)


def _token_of(path):
    return _first_placeholder(path, os.path.getmtime(path))


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
    else:
        st.caption("Scores apply to grids of the shapes-world model (`tiny-shapes`): its "
                   f"classifier (`{EVALUATION_MODULE}`) reads what each image shows.")
