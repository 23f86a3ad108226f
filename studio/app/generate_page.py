"""Generate: a base model with embeddings and LoRA files, a prompt, and images to keep."""

import io
import os
import re
import time

import streamlit as st

from studio.app.app_state import data_folder
from studio.app.cached_models import file_key, load_pipeline
from studio.app.file_library import (embedding_files, embedding_tokens, files_for_model,
                                     lora_files, picker_label)
from studio.app.model_catalog import ModelChoice
from studio.app.model_picker import pick_model
from studio.app.run_progress import format_duration
from studio.app.start_image import NO_MASK, pick_start_image
from studio.app.page_errors import errors_as_messages
from studio.app.safe_uploads import (MAX_EMBEDDING_BYTES, MAX_IMAGE_BYTES, MAX_LORA_BYTES,
                                     MEBIBYTE,
                                     save_embedding_upload, save_lora_upload)
from studio.errors import InvalidInputError
from studio.schedulers import scheduler_registry

# The sampler picker's labels: AUTOMATIC1111's names, as infotext writes them.
SAMPLERS = {name: entry[2] for name, entry in scheduler_registry.SAMPLERS.items()}
MAX_IMAGES = 8
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
DEFAULT_PROMPT = "a photo of a cat"


# The form's inputs and their first values. They are kept in `FORM_MEMORY`
# as well, because Streamlit forgets a widget's value once a page without
# it is drawn: leaving the page and coming back keeps the form.
FORM_DEFAULTS = {
    "generate_negative": "",
    "generate_sampler": "ddim",
    "generate_steps": 20,
    "generate_guidance": 7.5,
    "generate_seed": -1,
    "generate_count": 2,
    "generate_batches": 1,
    "generate_strength": 0.75,
    "generate_mask_source": NO_MASK,
    "generate_mask_columns": (25, 75),
    "generate_mask_rows": (25, 75),
    "generate_mask_blur": 4.0,
    "generate_mask_padding": 0,
}
FORM_MEMORY = "generate_form_memory"
RANDOM_SEED = -1
MAX_BATCHES = 16
# The history: a page of images, as thumbnails of at most this many pixels a side.
GALLERY_SIZE = 8
GALLERY_COLUMNS = 4
THUMBNAIL_SIZE = 256
THUMBNAIL_QUALITY = 85
_TOKEN = re.compile(r"<[^<>\s]+>")


def render():
    st.title("Generate")
    data = data_folder()
    settings, output = st.columns([2, 3], gap="large")
    with settings:
        model = pick_model("generate_model")
        _recall_form(model)
        with errors_as_messages("Adding the file"):
            _uploads(data)
        with errors_as_messages("Reading the image's settings"):
            _png_info()
        show_checkpoints = st.toggle("Include checkpoints", key="generate_show_checkpoints",
                                     help="Pick an embedding or LoRA of an earlier step of a "
                                     "run; by default the pickers list final results.")
        # Only files that load into the chosen model (an SD-XL LoRA is not offered
        # with an SD 1.x model).
        embedding_choices = files_for_model(
            embedding_files(data, include_checkpoints=show_checkpoints), model)
        embeddings = _pick_files("Embeddings", embedding_choices, "generate_embeddings")
        lora_choices = files_for_model(
            lora_files(data, include_checkpoints=show_checkpoints), model, lora=True)
        loras = _pick_files("LoRA files", lora_choices, "generate_loras")
        lora_scale = 1.0
        if loras:
            lora_scale = st.slider("LoRA strength", 0.0, 1.5, 1.0, 0.05, key="generate_lora_scale")
        tokens = _tokens_of(embeddings)
        _token_picker(tokens, model.example_prompt if model else DEFAULT_PROMPT)
        prompt = st.text_area("Prompt", key="generate_prompt", height=80)
        _unloaded_tokens(prompt, tokens, data)
        negative = st.text_input("Negative prompt", key="generate_negative",
                                 placeholder="blurry, low quality")
        row = st.columns(3)
        sampler = row[0].selectbox("Sampler", offered_samplers(model), format_func=SAMPLERS.get,
                                   key="generate_sampler")
        steps = row[1].number_input("Steps", 1, 200, key="generate_steps")
        guidance = row[2].number_input("Guidance", 0.0, 30.0, step=0.5, key="generate_guidance")
        row = st.columns(3)
        seed = row[0].number_input("Seed", RANDOM_SEED, 2**32 - 1, key="generate_seed",
                                   help="-1: a new random seed each time (the one used is "
                                   "written with the image).")
        width = row[1].number_input("Width", 8, 2048, step=8, key="generate_width")
        height = row[2].number_input("Height", 8, 2048, step=8, key="generate_height")
        row = st.columns(2)
        count = row[0].slider("Images per batch", 1, MAX_IMAGES, key="generate_count")
        batches = row[1].number_input("Batches", 1, MAX_BATCHES, key="generate_batches",
                                      help="Batches run one after another, each with the "
                                      "next seeds.")
        start = None
        with errors_as_messages("Reading the start image"):
            start = pick_start_image(int(width), int(height))
        _remember_form()
        go = st.button("Generate", type="primary", icon=":material/auto_awesome:",
                       disabled=model is None or start is None, width="stretch")
    with output:
        if go:
            with errors_as_messages("Generating"):
                _generate(data, model.name, embeddings, loras, lora_scale, prompt, negative,
                          sampler, int(steps), float(guidance),
                          None if seed == RANDOM_SEED else int(seed), int(width), int(height),
                          int(count), int(batches), start)
        _show_results()
        _gallery(data)


def offered_samplers(model):
    """The samplers that `model` (a `ModelChoice`, or None) samples with.

    The form's sampler changes to the first of them when the model has not
    the one chosen (an SD3 model after an SD 1.x image's settings).
    """
    names = ModelChoice.sampler_names(model)
    if st.session_state.get("generate_sampler") not in names:
        st.session_state["generate_sampler"] = names[0]
    return names


def _recall_form(model):
    """Puts the remembered (or first) values of the form's inputs back before they are drawn."""
    memory = st.session_state.setdefault(FORM_MEMORY, {})
    size = model.image_size if model else 512
    if memory.get("model_size") != size:  # Another model: its own size.
        memory.update(model_size=size, generate_width=size, generate_height=size)
    for key, value in {**FORM_DEFAULTS, **memory}.items():
        if key.startswith("generate_") and key not in st.session_state:
            st.session_state[key] = value


def _remember_form():
    memory = st.session_state[FORM_MEMORY]
    for key in (*FORM_DEFAULTS, "generate_width", "generate_height", "generate_prompt"):
        if key in st.session_state:
            memory[key] = st.session_state[key]


def _png_info():
    """PNG info: drop an image (the studio's or AUTOMATIC1111's), read its settings back.

    Reads the `parameters` text chunk with `studio.images.read_parameters`,
    the one reader of infotext; "Use these settings" puts them in the form.
    """
    with st.expander("PNG info: drop an image to get its settings back"):
        upload = st.file_uploader("Generated image", type=["png"], key="generate_png_info",
                                  max_upload_size=MAX_IMAGE_BYTES // MEBIBYTE)
        if upload is None:
            return
        from studio.images import read_parameters

        try:
            parameters = read_parameters(io.BytesIO(upload.getvalue()))
        except (OSError, ValueError):
            raise ValueError(f"{upload.name!r} is not a PNG image that can be read.") from None
        if parameters is None:
            st.warning(f"{upload.name} carries no generation settings (no `parameters` text).",
                       icon=":material/info:")
            return
        st.code(parameters.to_infotext(), language=None, wrap_lines=True)
        st.button("Use these settings", key="png-info-restore", icon=":material/restore:",
                  on_click=_restore, args=(parameters,))


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
    """A multiselect of library files, named by token (or LoRA name) with their run and step."""
    by_label = {picker_label(file): file.path for file in files}
    chosen = st.multiselect(label, list(by_label), key=key,
                            placeholder="none" if by_label else "none yet")
    return [by_label[name] for name in chosen if name in by_label]


def _unloaded_tokens(prompt, tokens, data):
    """Warns about `<tokens>` of the prompt whose embedding is not picked."""
    missing = [token for token in dict.fromkeys(_TOKEN.findall(prompt)) if token not in tokens]
    if not missing:
        return
    known = {}
    for file in embedding_files(data):
        if file.step is None:
            try:
                for token in embedding_tokens(file.path):
                    known.setdefault(token, picker_label(file))
            except Exception:
                continue
    for token in missing:
        if token in known:
            st.warning(f"The prompt uses {token}, but its embedding is not picked: the model "
                       f"reads it as plain text. Pick **{known[token]}** under Embeddings.",
                       icon=":material/warning:")
        else:
            st.warning(f"The prompt uses {token}, which no embedding in the library has: the "
                       "model reads it as plain text.", icon=":material/warning:")


def _tokens_of(paths):
    tokens = []
    for path in paths:
        try:
            tokens += embedding_tokens(path)
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
              guidance, seed, width, height, count, batches=1, start=None):
    """Generates `batches` batches of `count` images, saved in the outputs folder.

    `seed` None draws a random first seed; each batch starts after the
    previous batch's seeds. `start`: a `StartImage` (image-to-image,
    inpainting) or None.
    """
    import secrets

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
    first_seed = secrets.randbelow(2**31) if seed is None else seed
    bar = st.progress(0.0, text="Generating…")
    started = time.perf_counter()
    images = []
    for batch in range(batches):

        def advance(step, total, batch=batch):
            done = batch * total + step
            whole = batches * total
            elapsed = time.perf_counter() - started
            eta = elapsed / done * (whole - done) if done else None
            left = "" if eta is None else f" · about {format_duration(eta)} left"
            bar.progress(min(1.0, done / whole),
                         text=f"Step {done} of {whole}" + (f" (batch {batch + 1} of {batches})"
                                                           if batches > 1 else "") + left)

        result = pipeline(prompt, negative_prompt=negative, num_images_per_prompt=count,
                          num_steps=steps, guidance_scale=guidance,
                          seed=first_seed + batch * count, height=height, width=width,
                          sampler=sampler, callback=advance,
                          **(start.pipeline_options() if start else {}))
        for image, parameters in zip(result.images, result.parameters):
            name = f"{_next_index(data.outputs):05d}-{parameters.seed}.png"
            path = os.path.join(data.outputs, name)
            save_png(image, path, parameters)
            with open(path, "rb") as file:
                images.append((file.read(), parameters.to_infotext(), name))
    bar.empty()
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


@st.cache_data(show_spinner=False, max_entries=512)
def _parameters(path, mtime):
    from studio.images import read_parameters

    try:
        return read_parameters(path)
    except (OSError, ValueError):
        return None


def _gallery(data):
    """Every image generated so far, newest first, with its settings one click away."""
    try:
        names = sorted((n for n in os.listdir(data.outputs) if n.endswith(".png")), reverse=True)
    except OSError:
        names = []
    if not names:
        return
    st.subheader(f"History ({len(names)})", anchor=False)
    pages = -(-len(names) // GALLERY_SIZE)
    page = 1
    if pages > 1:
        page = st.number_input("Page", 1, pages, 1, key="generate_gallery_page")
    shown = names[(page - 1) * GALLERY_SIZE: page * GALLERY_SIZE]
    columns = st.columns(GALLERY_COLUMNS)
    for index, name in enumerate(shown):
        path = os.path.join(data.outputs, name)
        mtime = os.path.getmtime(path)
        parameters = _parameters(path, mtime)
        with columns[index % GALLERY_COLUMNS]:
            st.image(_thumbnail(path, mtime) or path, width="stretch")
            if parameters is None:
                st.caption(name)
                continue
            # One tooltip per image (the button's): each costs the browser a component.
            st.caption(f"{parameters.prompt[:60]} · seed {parameters.seed}")
            st.button("Restore", key=f"restore-{name}", icon=":material/restore:",
                      on_click=_restore, args=(parameters,),
                      help="Put this image's settings back into the form:\n\n"
                      f"{parameters.to_infotext()}")


@st.cache_data(show_spinner=False, max_entries=256)
def _thumbnail(path, mtime):
    """A small JPEG of a large image (the history shows a page of them), or None if small."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if max(image.size) <= THUMBNAIL_SIZE:
                return None
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    except OSError:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def _restore(parameters):
    """Puts a generated image's settings into the form (a button's callback: before drawing)."""
    values = {
        "generate_prompt": parameters.prompt,
        "generate_negative": parameters.negative_prompt,
        "generate_steps": int(parameters.steps),
        "generate_guidance": float(parameters.guidance_scale),
        "generate_seed": int(parameters.seed),
        "generate_width": int(parameters.width),
        "generate_height": int(parameters.height),
    }
    try:
        # A1111's name or ours, in any case ("Euler a", "euler_a").
        values["generate_sampler"] = scheduler_registry.scheduler_short_name(parameters.sampler)
    except InvalidInputError:
        pass  # A sampler the studio does not have: the form keeps its own.
    # Image-to-image and inpainting settings (the start image and mask are not in the PNG).
    for field, key, kind in (("Denoising strength", "generate_strength", float),
                             ("Mask blur", "generate_mask_blur", float),
                             ("Mask padding", "generate_mask_padding", int)):
        try:
            values[key] = kind(float(parameters.extra[field]))
        except (KeyError, ValueError):
            continue
    st.session_state.update(values)
    st.session_state.setdefault(FORM_MEMORY, {}).update(values)
