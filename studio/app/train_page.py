"""Train: pick images, check them, choose a method, start a run, and watch it learn."""

import datetime
import os
import re

import streamlit as st

from studio.app import run_status
from studio.app.app_state import data_folder
from studio.app.model_catalog import model_choices
from studio.app.navigation import page
from studio.app.page_errors import errors_as_messages
from studio.app.run_panels import (POLL_SECONDS, progress_panel, samples_panel, status_badge,
                                   stop_button)
from studio.app.run_record import RunRecord, list_runs
from studio.app.safe_uploads import (IMAGE_EXTENSIONS, MAX_IMAGE_BYTES, MEBIBYTE,
                                     save_image_uploads)
from studio.app.training_launcher import new_run_request, start_training
from studio.trainers.settings.dreambooth_settings import (DEFAULT_FULL_LR, DEFAULT_LORA_LR,
                                                          DreamBoothSettings)
from studio.trainers.settings.precision import PRECISIONS
from studio.trainers.settings.textual_inversion_settings import (PROPERTIES,
                                                                 TextualInversionSettings)

METHODS = {
    "textual-inversion": "Textual inversion — learn a new word",
    "dreambooth-lora": "DreamBooth LoRA — small adapter file",
    "dreambooth-full": "DreamBooth full — fine-tune the whole UNet",
}
DEFAULT_DATASET = "my-concept"
# The learning rates each method starts well with: the settings' defaults.
DEFAULT_LEARNING_RATES = {"textual-inversion": TextualInversionSettings.default("lr"),
                          "dreambooth-lora": DEFAULT_LORA_LR, "dreambooth-full": DEFAULT_FULL_LR}
DEFAULT_LORA_RANK = 4
_SLUG = re.compile(r"[^a-z0-9]+")


def render():
    st.title("Teach a concept")
    st.caption("Show the model a few pictures of something new, give it a name, and watch "
               "it learn. Training runs in its own process: close or reload this page at "
               "any time — the run goes on, and comes back here.")
    data = data_folder()
    record = _followed_run(data)
    # Read once: a run that ends while the page is drawn must not be drawn twice.
    active = record is not None and record.status().is_active
    if active:
        _run_section(record)
        st.divider()
    with errors_as_messages("Checking the images"):
        folder = _images_section(data)
    st.divider()
    with errors_as_messages("Starting the run"):
        _settings_section(data, folder)
    if record is not None and not active:
        st.divider()
        _run_section(record)


def _followed_run(data):
    """The run this page shows: the one started in this session, else the newest active
    one, else the newest one (so a reload or a second tab shows the same run)."""
    selected = st.session_state.get("selected_run")
    if selected and os.path.isdir(selected):
        return RunRecord(selected)
    runs = list_runs(data.runs)
    for record in runs:
        if record.status().is_active:
            return record
    return runs[0] if runs else None


# --- Images ---------------------------------------------------------------

def _images_section(data):
    st.subheader("1 · Images", anchor=False)
    source = st.segmented_control(
        "Where are the images?", ["Upload", "A folder on this machine"],
        default="Upload", key="image_source",
    )
    if source == "A folder on this machine":
        folder = st.text_input("Folder", key="image_folder",
                               placeholder="/home/me/pictures/my-cat-toy",
                               help="Read only: the studio never changes it.")
        folder = folder.strip()
        if not folder:
            return None
        if not os.path.isdir(folder):
            st.error(f"There is no folder {folder!r} on this machine.")
            return None
    else:
        folder = _upload_images(data)
        if folder is None:
            return None
    _data_report(folder)
    return folder


def _upload_images(data):
    existing = sorted(
        name for name in os.listdir(data.datasets) if os.path.isdir(os.path.join(data.datasets, name))
    )
    left, right = st.columns([1, 2])
    name = left.text_input("Data set name", value=DEFAULT_DATASET, key="dataset_name",
                           help="Uploads are collected in a folder of this name.")
    slug = _SLUG.sub("-", name.lower()).strip("-") or DEFAULT_DATASET
    folder = os.path.join(data.datasets, slug)
    uploads = right.file_uploader(
        f"Images ({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}; up to "
        f"{MAX_IMAGE_BYTES // MEBIBYTE} MiB each)",
        accept_multiple_files=True, key="image_uploads",
    )
    saved = st.session_state.setdefault("saved_uploads", {})
    new = [upload for upload in uploads or [] if upload.file_id not in saved]
    results = save_image_uploads(folder, [(upload.name, upload.getvalue()) for upload in new])
    for upload, (path, error) in zip(new, results):
        saved[upload.file_id] = path
        if error is not None:
            st.session_state.setdefault("upload_errors", []).append(error)
    for message in st.session_state.get("upload_errors", []):
        st.error(message, icon=":material/block:")
    if existing:
        left.caption("Data sets so far: " + ", ".join(existing))
    if not os.path.isdir(folder) or not os.listdir(folder):
        st.info("Upload 3–20 pictures of your concept: different angles, backgrounds and "
                "lighting help the model tell the concept from its surroundings.",
                icon=":material/photo_library:")
        return None
    return folder


@st.cache_data(show_spinner="Checking the images…", max_entries=8)
def _check_folder(folder, resolution, fingerprint):
    """`(report text, usable count, problems, contact sheet PNG or None)` of a folder."""
    import io

    from studio.datasets import InvalidImageFolderError, image_folder
    from studio.datasets.contact_sheet import make_contact_sheet

    try:
        checked = image_folder.ImageFolder(folder, resolution=resolution, skip_invalid=True)
    except InvalidImageFolderError as error:
        report = getattr(error, "report", None)
        problems = list(report.problems) if report is not None else []
        return str(error), 0, problems, None
    sheet = make_contact_sheet(checked.images, checked.names)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return (checked.report.format(), len(checked), list(checked.report.problems),
            buffer.getvalue())


def _data_report(folder):
    names = sorted(os.listdir(folder))
    fingerprint = tuple((name, os.path.getmtime(os.path.join(folder, name))) for name in names)
    resolution = _training_resolution()
    _, usable, problems, sheet = _check_folder(folder, int(resolution), fingerprint)
    columns = st.columns([1, 1, 3])
    columns[0].metric("Usable images", usable)
    columns[1].metric("Problems", len(problems))
    if problems:
        with columns[2]:
            st.warning("These files will be left out:\n\n" + "\n".join(
                f"- **{name}**: {reason}" for name, reason in problems))
    elif usable:
        columns[2].success("Every image can be used.", icon=":material/check:")
    if sheet is not None:
        with st.expander("Contact sheet — the images as the model will see them", expanded=True):
            st.image(sheet, width="content")
    st.session_state["checked_usable"] = usable


def _training_resolution():
    """The resolution chosen below, else the chosen (or first offline) model's own."""
    available = [choice for choice in model_choices() if choice.available]
    name = st.session_state.get("train_model") or available[0].name
    size = next((choice.image_size for choice in available if choice.name == name), 512)
    return int(st.session_state.get(f"train_resolution_{name}") or size)


# --- Settings and start ---------------------------------------------------

def _settings_section(data, folder):
    st.subheader("2 · Method and settings", anchor=False)
    choices = model_choices()
    available = [choice for choice in choices if choice.available]
    # Outside the form: the model's choice changes the suggested words and
    # the resolution (and the contact sheet above) at once.
    first = st.columns(2)
    method = first[0].radio("Method", list(METHODS), format_func=METHODS.get, horizontal=True,
                            key="train_method")
    model = first[1].selectbox(
        "Base model", [choice.name for choice in available], key="train_model",
        help="The first one, tiny-shapes, ships with the studio and runs on a CPU in "
        "minutes. Models that need a download first are listed on the Generate page.")
    chosen = next(c for c in available if c.name == model)
    image_size = chosen.image_size
    with st.form("train_settings", border=True):
        top = st.columns(2)
        if method == "textual-inversion":
            token = top[0].text_input("Placeholder token", value="<my-concept>",
                                      key="train_token",
                                      help="The new word you will write in prompts.")
            init_word = top[1].text_input(
                "Initializer word", value=chosen.initializer_word,
                key=f"train_init_word_{model}",
                help="An existing word close to the concept; the new word starts from its "
                f"meaning (e.g. {chosen.initializer_word!r} for {model}).")
            kind = st.radio("What is it?", list(PROPERTIES), horizontal=True,
                            key="train_property",
                            help="An object (a thing, a person) or a style (a look).")
        else:
            token = top[0].text_input("Instance prompt", value=chosen.instance_prompt,
                                      key=f"train_instance_prompt_{model}",
                                      help="A rare word (sks) plus the class of the subject.")
            init_word = top[1].text_input(
                "Class prompt (optional)", value="", key="train_class_prompt",
                help="e.g. 'a photo of a toy': the model first makes class images to keep the "
                "class's meaning (prior preservation). Slower.")
            kind = None
        middle = st.columns(4)
        steps = middle[0].number_input("Steps", 1, 100000, 200, key="train_steps")
        learning_rate = middle[1].number_input(
            "Learning rate", min_value=1e-7, max_value=1.0,
            value=DEFAULT_LEARNING_RATES[method], format="%.0e", key=f"train_lr_{method}")
        resolution = middle[2].number_input(
            "Resolution", min_value=8, max_value=1024, value=image_size, step=8,
            key=f"train_resolution_{model}", help=f"Training image size; {model} was trained at "
            f"{image_size} px.")
        precision = middle[3].selectbox("Precision", PRECISIONS, key="train_precision",
                                        help="mixed_float16 needs a GPU to be faster.")
        with st.expander("More settings"):
            more = st.columns(4)
            sample_every = more[0].number_input("Samples every (steps)", 0, 100000,
                                                max(1, int(steps) // 4), key="train_sample_every")
            save_every = more[1].number_input("Checkpoint every (steps)", 1, 100000,
                                              max(1, int(steps) // 4), key="train_save_every")
            seed = more[2].number_input("Seed", 0, 2**31 - 1,
                                        TextualInversionSettings.default("seed"), key="train_seed")
            sample_steps = more[3].number_input("Sampling steps of samples", 1, 200, 20,
                                                key="train_sample_steps")
            lora_rank = more[0].number_input("LoRA rank", 1, 256, DEFAULT_LORA_RANK,
                                             key="train_lora_rank",
                                             disabled=method != "dreambooth-lora")
            num_vectors = more[1].number_input("Vectors per token", 1, 16,
                                               TextualInversionSettings.default("num_vectors"),
                                               key="train_num_vectors",
                                               disabled=method != "textual-inversion")
        start = st.form_submit_button("Start training", type="primary", icon=":material/school:",
                                      disabled=folder is None)
    if folder is None:
        st.caption("Add images above to start.")
    if not start:
        return
    if not st.session_state.get("checked_usable"):
        raise ValueError("The data set has no usable image; add images first.")
    settings = {
        "model": model,
        "data": os.path.abspath(folder),
        "steps": int(steps),
        "lr": float(learning_rate),
        "resolution": int(resolution),
        "precision": precision,
        "seed": int(seed),
        "sample_every": int(sample_every) or None,
        "sample_steps": int(sample_steps),
        "save_every": int(save_every),
        "log_every": 1,
        "cache_dir": os.path.join(data.cache, "latents"),
    }
    if method == "textual-inversion":
        from studio.prompts import validate_placeholder_token

        validate_placeholder_token(token.strip())
        if not init_word.strip():
            raise ValueError("Give an initializer word: an existing word close to the concept.")
        settings = TextualInversionSettings(
            **settings, token=token.strip(), init_word=init_word.strip(), property=kind,
            num_vectors=int(num_vectors))
    else:
        if not token.strip():
            raise ValueError("Give an instance prompt, such as 'a photo of sks toy'.")
        settings = DreamBoothSettings(
            **settings, instance_prompt=token.strip(), class_prompt=init_word.strip() or None,
            lora_rank=int(lora_rank) if method == "dreambooth-lora" else None)
    name = _run_name(token)
    run_dir = os.path.join(data.runs, name)
    start_training(run_dir, new_run_request(settings))
    st.session_state["selected_run"] = run_dir
    st.toast(f"Started {name}")
    st.rerun()


def _run_name(text):
    slug = _SLUG.sub("-", text.lower()).strip("-")[:40] or "run"
    return f"{slug}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"


# --- The followed run -----------------------------------------------------

def _run_section(record):
    status = record.status()
    st.subheader("Training" if status.is_active else "Last run", anchor=False)

    @st.fragment(run_every=POLL_SECONDS if status.is_active else None)
    def live():
        current = record.status()
        if status.is_active and not current.is_active:
            st.rerun(scope="app")  # It ended: show the finished page.
        header = st.columns([4, 1])
        with header[0]:
            st.markdown(f"**{record.name}** · {record.method_label} · "
                        f"`{record.config.get('token') or record.config.get('instance_prompt') or ''}`")
            status_badge(current)
            if current.state == run_status.FAILED:
                st.error(current.message, icon=":material/error:")
            else:
                st.caption(current.message)
        if current.is_active:
            with header[1]:
                stop_button(record, current, key=f"stop-{record.name}")
        progress_panel(record, current)
        samples_panel(record, key=f"train-samples-{record.name}")
        if not current.is_active:
            st.page_link(page("runs"), label="See every run, resume or open TensorBoard on the Runs page",
                         icon=":material/list:")

    live()
