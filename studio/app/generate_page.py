"""Generate: a base model with embeddings and LoRA files, a prompt, and images to keep."""

import io
import os

import streamlit as st

from studio.app.app_state import data_folder
from studio.app.cached_models import file_key, load_pipeline
from studio.app.file_library import embedding_files, lora_files
from studio.app.model_picker import pick_model
from studio.app.page_errors import errors_as_messages
from studio.app.safe_uploads import (MAX_EMBEDDING_BYTES, MAX_LORA_BYTES, MEBIBYTE,
                                     save_embedding_upload, save_lora_upload)

SAMPLERS = {"ddim": "DDIM", "euler": "Euler", "euler_a": "Euler a", "dpmpp_2m": "DPM++ 2M"}
MAX_IMAGES = 8
DEFAULT_PROMPT = "a photo of a cat"


def render():
    st.title("Generate")
    data = data_folder()
    settings, output = st.columns([2, 3], gap="large")
    with settings:
        model = pick_model("generate_model")
        with errors_as_messages("Adding the file"):
            _uploads(data)
        embeddings = _pick_files("Embeddings", embedding_files(data), "generate_embeddings")
        loras = _pick_files("LoRA files", lora_files(data), "generate_loras")
        lora_scale = 1.0
        if loras:
            lora_scale = st.slider("LoRA strength", 0.0, 1.5, 1.0, 0.05, key="generate_lora_scale")
        tokens = _tokens_of(embeddings)
        _token_picker(tokens, model.example_prompt if model else DEFAULT_PROMPT)
        prompt = st.text_area("Prompt", key="generate_prompt", height=80)
        negative = st.text_input("Negative prompt", key="generate_negative",
                                 placeholder="blurry, low quality")
        row = st.columns(3)
        sampler = row[0].selectbox("Sampler", list(SAMPLERS), format_func=SAMPLERS.get,
                                   key="generate_sampler")
        steps = row[1].number_input("Steps", 1, 200, 20, key="generate_steps")
        guidance = row[2].number_input("Guidance", 0.0, 30.0, 7.5, 0.5, key="generate_guidance")
        row = st.columns(3)
        seed = row[0].number_input("Seed", 0, 2**32 - 1, 1, key="generate_seed")
        size = model.image_size if model else 512
        width = row[1].number_input("Width", 8, 2048, size, 8, key=f"generate_width_{size}")
        height = row[2].number_input("Height", 8, 2048, size, 8, key=f"generate_height_{size}")
        count = st.slider("Images", 1, MAX_IMAGES, 2, key="generate_count")
        go = st.button("Generate", type="primary", icon=":material/auto_awesome:",
                       disabled=model is None, width="stretch")
    with output:
        if go:
            with errors_as_messages("Generating"):
                _generate(data, model.name, embeddings, loras, lora_scale, prompt, negative,
                          sampler, int(steps), float(guidance), int(seed), int(width),
                          int(height), int(count))
        _show_results()


def _uploads(data):
    with st.expander("Add embedding or LoRA files"):
        upload = st.file_uploader(
            f"Embedding files (.safetensors, .pt, .bin; up to {MAX_EMBEDDING_BYTES // MEBIBYTE} "
            "MiB): native, diffusers, kohya or AUTOMATIC1111", key="generate_embedding_upload",
            max_upload_size=MAX_EMBEDDING_BYTES // MEBIBYTE)
        if upload is not None and st.session_state.get("generate_last_embedding") != upload.file_id:
            st.session_state["generate_last_embedding"] = upload.file_id
            path, embedding = save_embedding_upload(data.embeddings, upload.name, upload.getvalue())
            st.success(f"Added {os.path.basename(path)} ({', '.join(embedding.placeholders)}) "
                       "to the library.")
        upload = st.file_uploader(
            f"LoRA files (kohya .safetensors; up to {MAX_LORA_BYTES // MEBIBYTE} MiB)",
            key="generate_lora_upload",
            max_upload_size=MAX_LORA_BYTES // MEBIBYTE)
        if upload is not None and st.session_state.get("generate_last_lora") != upload.file_id:
            st.session_state["generate_last_lora"] = upload.file_id
            path = save_lora_upload(data.loras, upload.name, upload.getvalue())
            st.success(f"Added {os.path.basename(path)} to the LoRA files.")


def _pick_files(label, files, key):
    by_label = {file.label: file.path for file in files}
    chosen = st.multiselect(label, list(by_label), key=key,
                            placeholder="none" if by_label else "none yet")
    return [by_label[name] for name in chosen if name in by_label]


@st.cache_data(show_spinner=False, max_entries=64)
def _placeholders(path, mtime):
    from studio.embeddings import load_embedding

    return load_embedding(path).placeholders


def _tokens_of(paths):
    tokens = []
    for path in paths:
        try:
            tokens += _placeholders(path, os.path.getmtime(path))
        except Exception as error:  # Shown, and the file is left out of the picker.
            st.error(f"{os.path.basename(path)} cannot be read: {error}")
    return tokens


def _token_picker(tokens, example_prompt):
    if "generate_prompt" not in st.session_state:
        st.session_state["generate_prompt"] = example_prompt
    if not tokens:
        return
    st.caption("Insert a token into the prompt:")
    columns = st.columns(min(len(tokens), 4))
    for index, token in enumerate(tokens):
        columns[index % len(columns)].button(
            token, key=f"insert-token-{index}", on_click=_insert_token, args=(token,),
            icon=":material/add:")


def _insert_token(token):
    prompt = st.session_state.get("generate_prompt", "").rstrip()
    st.session_state["generate_prompt"] = f"{prompt} {token}".strip()


def _generate(data, model, embeddings, loras, lora_scale, prompt, negative, sampler, steps,
              guidance, seed, width, height, count):
    from studio.images import save_png

    if not prompt.strip():
        raise ValueError("Write a prompt first.")
    for label, value in (("Width", width), ("Height", height)):
        if value % 8:
            raise ValueError(f"{label} must be a multiple of 8. Received: {value}")
    pipeline = load_pipeline(
        model,
        loras=tuple((file_key(path), lora_scale) for path in loras),
        embeddings=tuple(file_key(path) for path in embeddings),
    )
    bar = st.progress(0.0, text="Generating…")

    def advance(step, total):
        bar.progress(min(1.0, step / total), text=f"Sampling step {step} of {total}")

    result = pipeline(prompt, negative_prompt=negative, num_images_per_prompt=count,
                      num_steps=steps, guidance_scale=guidance, seed=seed, height=height,
                      width=width, sampler=sampler, callback=advance)
    bar.empty()
    images = []
    for image, parameters in zip(result.images, result.parameters):
        path = os.path.join(data.outputs, f"{_next_index(data.outputs):05d}-{parameters.seed}.png")
        save_png(image, path, parameters)
        with open(path, "rb") as file:
            images.append((file.read(), parameters.to_infotext(), os.path.basename(path)))
    st.session_state["generated"] = images


def _next_index(folder):
    from studio.images import next_image_index

    return next_image_index(folder)


def _show_results():
    images = st.session_state.get("generated")
    if not images:
        st.info("Your images appear here, each with the parameters that made it.",
                icon=":material/image:")
        return
    columns = st.columns(2)
    for index, (png, infotext, name) in enumerate(images):
        with columns[index % 2]:
            with st.container(border=True):
                st.image(io.BytesIO(png), width="stretch")
                st.code(infotext, language=None, wrap_lines=True)
                st.download_button("Download PNG", png, file_name=name, mime="image/png",
                                   key=f"download-{name}", icon=":material/download:")
