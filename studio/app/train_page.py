"""Train: pick images, check them, choose a method, start a run, and watch it learn."""

import dataclasses
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
from studio.app.dataset_library import FEW_IMAGES, DatasetLibrary, dataset_slug
from studio.app.family_settings_check import check_family_settings, refusal, refuses_setting
from studio.app.run_queue import RunQueue
from studio.app.settings_form import setting_input
from studio.app.training_launcher import new_run_request, start_training
from studio.trainers.settings.dreambooth_settings import (DEFAULT_FULL_LR, DEFAULT_LORA_LR,
                                                          DreamBoothSettings)
from studio.trainers.settings.textual_inversion_settings import TextualInversionSettings

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
        if st.session_state.get("selected_run") == record.path:
            _run_section(record)  # The run this session started or resumed: its end.
        else:
            st.page_link(page("runs"), label=f"The last run, {record.name}, and every other "
                         "run are on the Runs page", icon=":material/list:")


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
    rejected = st.session_state.get("upload_errors", {}).get(os.path.basename(folder), [])
    _data_report(folder, len(rejected) if source != "A folder on this machine" else 0)
    return folder


NEW_DATASET = "+ New data set"


def _upload_images(data):
    """The data set library: pick an earlier set or make a new one, upload, edit, rename, delete."""
    library = DatasetLibrary(data.datasets)
    names = library.names()
    options = [*names, NEW_DATASET]
    following = st.session_state.pop("train_dataset_next", None)
    if following in options:
        st.session_state["train_dataset"] = following
    if st.session_state.get("train_dataset") not in options:
        st.session_state["train_dataset"] = options[0]
    left, right = st.columns([1, 2])
    chosen = left.selectbox("Data set", options, key="train_dataset",
                            help="Your earlier data sets, the most recently changed first.")
    if chosen == NEW_DATASET:
        name = left.text_input("Name of the new data set", value="", key="new_dataset_name",
                               placeholder=DEFAULT_DATASET)
        slug = dataset_slug(name or DEFAULT_DATASET)
        if name and slug != name:
            left.caption(f"It will be saved as **{slug}** (a folder name keeps letters, digits "
                         "and dashes).")
        if slug in names:
            left.error(f"A data set named {slug!r} exists already: pick it in the list above to "
                       "add images to it, or choose another name.", icon=":material/block:")
            return None
    else:
        slug = chosen
    folder = library.path(slug)
    uploads = right.file_uploader(
        f"Images ({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}; up to "
        f"{MAX_IMAGE_BYTES // MEBIBYTE} MiB each)",
        accept_multiple_files=True, key=f"image_uploads_{slug}" if chosen != NEW_DATASET
        else "image_uploads",
        max_upload_size=MAX_IMAGE_BYTES // MEBIBYTE,
    )
    saved = st.session_state.setdefault("saved_uploads", {})
    new = [upload for upload in uploads or [] if upload.file_id not in saved]
    if new:
        os.makedirs(folder, exist_ok=True)
        known = library.content_hashes(slug)
        results = save_image_uploads(folder, [(u.name, u.getvalue()) for u in new], known)
        rejected = st.session_state.setdefault("upload_errors", {}).setdefault(slug, [])
        renamed = st.session_state.setdefault("upload_renamed", {}).setdefault(slug, [])
        for upload, (path, error) in zip(new, results):
            saved[upload.file_id] = path
            if error is not None:
                rejected.append(error)
            elif os.path.basename(path) != upload.name:
                renamed.append((upload.name, os.path.basename(path)))
        if chosen == NEW_DATASET and library.images(slug):
            st.session_state["train_dataset_next"] = slug  # Show it as a set of the library.
            st.rerun()
    for message in st.session_state.get("upload_errors", {}).get(slug, []):
        st.error(message, icon=":material/block:")
    renamed = st.session_state.get("upload_renamed", {}).get(slug, [])
    if renamed:
        st.caption("Saved under safe names: " + ", ".join(
            f"`{original}` → `{name}`" for original, name in renamed))
    if not library.images(slug):
        st.info("Upload 3–20 pictures of your concept: different angles, backgrounds and "
                "lighting help the model tell the concept from its surroundings.",
                icon=":material/photo_library:")
        return None
    if chosen != NEW_DATASET:
        _edit_dataset(library, slug)
    return folder


def _edit_dataset(library, name):
    """Captions per image, removing images, renaming and deleting the data set."""
    with st.expander(f"Edit the data set {name}"):
        images = library.images(name)
        for index, file in enumerate(images):
            row = st.columns([1, 4, 1])
            row[0].image(library.path(name) + os.sep + file, width=64)
            caption = row[1].text_input(
                f"Caption of {file}", value=library.caption(name, file),
                key=f"caption-{name}-{file}", placeholder="no caption: the prompt templates",
                help="One caption per line; {} stands for the token or instance prompt.")
            if caption.strip() != library.caption(name, file):
                library.set_caption(name, file, caption)
            if row[2].button("Remove", key=f"remove-{name}-{file}", icon=":material/delete:"):
                library.remove_image(name, file)
                st.rerun()
        row = st.columns([2, 1, 1])
        new_name = row[0].text_input("Rename the data set", value=name, key=f"rename-set-{name}")
        if row[1].button("Rename", key=f"rename-set-button-{name}") and new_name != name:
            st.session_state["train_dataset_next"] = library.rename(name, new_name)
            st.rerun()
        confirm = f"confirm-delete-set-{name}"
        if row[2].button("Delete the data set", key=f"delete-set-{name}"):
            st.session_state[confirm] = True
        if st.session_state.get(confirm):
            st.warning(f"Delete the data set {name} and its {len(images)} images? Runs trained "
                       "on it keep their results.", icon=":material/warning:")
            answer = st.columns(2)
            if answer[0].button(f"Yes, delete {name}", type="primary", key=f"delete-set-yes-{name}"):
                library.delete(name)
                st.session_state.pop(confirm, None)
                st.rerun()
            if answer[1].button("Keep it", key=f"delete-set-no-{name}"):
                st.session_state.pop(confirm, None)
                st.rerun()


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


def _data_report(folder, rejected_uploads=0):
    """The images' check: counts (rejected uploads count as problems), warnings, contact sheet."""
    names = sorted(os.listdir(folder))
    fingerprint = tuple((name, os.path.getmtime(os.path.join(folder, name))) for name in names)
    resolution = _training_resolution()
    _, usable, problems, sheet = _check_folder(folder, int(resolution), fingerprint)
    columns = st.columns([1, 1, 3])
    columns[0].metric("Usable images", usable)
    columns[1].metric("Problems", len(problems) + rejected_uploads,
                      help="Files left out: uploads refused (above) and files of the folder "
                      "that cannot be used.")
    if problems:
        with columns[2]:
            st.warning("These files will be left out:\n\n" + "\n".join(
                f"- **{name}**: {reason}" for name, reason in problems))
    elif usable and rejected_uploads:
        columns[2].warning(f"{rejected_uploads} upload{'s were' if rejected_uploads > 1 else ' was'}"
                           " refused (see above); the images saved can all be used.",
                           icon=":material/warning:")
    elif usable:
        columns[2].success("Every image can be used.", icon=":material/check:")
    if 0 < usable < FEW_IMAGES:
        st.warning(f"Only {usable} usable image{'s' if usable > 1 else ''}: with fewer than "
                   f"{FEW_IMAGES} the model tends to learn the pictures' backgrounds and poses "
                   "along with the concept. 3–20 varied pictures work best.",
                   icon=":material/warning:")
    if sheet is not None:
        with st.expander("Contact sheet — the images as the model will see them", expanded=True):
            st.image(sheet, width="content")
    st.session_state["checked_usable"] = usable


def _training_resolution():
    """The resolution chosen below, else the chosen (or first offline) model's own."""
    available = [choice for choice in model_choices() if choice.available]
    name = st.session_state.get("train_model") or available[0].name
    size = next((choice.image_size for choice in available if choice.name == name), 512)
    method = st.session_state.get("train_method") or next(iter(METHODS))
    return int(st.session_state.get(field_key(method, "resolution") + f"_{name}") or size)


# --- Settings and start ---------------------------------------------------

# Which settings each method shows, and where: the basic ones in the form,
# the others folded under "Advanced". Fields not listed keep the settings'
# defaults (`model`, `data`, the cache folder and the logging the app sets).
METHOD_FIELDS = {
    "textual-inversion": (
        TextualInversionSettings,
        ("token", "init_word", "property", "steps", "lr", "resolution", "precision"),
        ("num_vectors", "batch_size", "grad_accum", "warmup_steps", "min_snr_gamma",
         "offset_noise", "weighting_scheme", "precondition_outputs", "norm_regularization",
         "latent_variants", "seed", "sample_every",
         "sample_steps", "sample_prompts", "save_every", "keep_checkpoints",
         "skip_invalid_images"),
    ),
    "dreambooth-lora": (
        DreamBoothSettings,
        ("instance_prompt", "class_prompt", "num_class_images", "prior_loss_weight",
         "train_text_encoder", "lora_rank", "steps", "lr", "resolution", "precision"),
        ("token", "init_word", "ti_fraction", "lora_alpha", "lora_feed_forward",
         "class_image_steps", "class_image_guidance",
         "optimizer", "lr_decay", "batch_size", "grad_accum", "warmup_steps", "min_snr_gamma",
         "offset_noise", "weighting_scheme", "precondition_outputs", "latent_variants", "seed",
         "sample_every", "sample_steps", "sample_prompts", "save_every", "keep_checkpoints",
         "skip_invalid_images"),
    ),
    "dreambooth-full": (
        DreamBoothSettings,
        ("instance_prompt", "class_prompt", "num_class_images", "prior_loss_weight",
         "train_text_encoder", "optimizer", "remat", "steps", "lr", "resolution", "precision"),
        ("class_image_steps", "class_image_guidance", "lr_decay", "batch_size", "grad_accum",
         "warmup_steps", "min_snr_gamma", "offset_noise", "latent_variants", "seed",
         "sample_every", "sample_steps", "sample_prompts", "save_every", "keep_checkpoints",
         "skip_invalid_images"),
    ),
}
# DreamBooth's settings of pivotal tuning: a new token, the word it starts
# from, and the part of the steps it trains in.
PIVOTAL_FIELDS = ("token", "init_word", "ti_fraction")
# Where the app's run differs from `studio train`'s defaults, and why.
APP_SETTINGS = {
    "log_every": 1,  # The live loss curve shows every step.
}
# The studio's evaluation of DreamBooth LoRA on a new identifier: instance
# fidelity 0.075 with the UNet alone, 0.85 with the text encoder's LoRA.
TEXT_ENCODER_HELP = (
    "Also learn LoRA matrices in the text encoder. For a new identifier (a rare word such "
    "as sks) it matters most: the studio's evaluation measured an instance fidelity of "
    "0.85 with it against 0.075 with the UNet alone."
)
# Bytes per trained UNet weight in full fine-tuning (float32 weight and
# gradient, plus the optimizer's state), by optimizer: what dominates memory.
BYTES_PER_TRAINED_WEIGHT = {"adamw": 16, "adam": 16, "lion": 12, "sgd": 12, "adafactor": 9}


def field_key(method, name):
    """The widget key of the setting `name` of `method` (each method keeps its own values)."""
    return f"train_{method}_{name}"


def _settings_section(data, folder):
    st.subheader("2 · Method and settings", anchor=False)
    choices = model_choices()
    available = [choice for choice in choices if choice.available]
    # Outside the form: the model's choice changes the suggested words and
    # the resolution (and the contact sheet above) at once.
    first = st.columns(2)
    model = first[1].selectbox(
        "Base model", [choice.name for choice in available], key="train_model",
        help="The first one, tiny-shapes, ships with the studio and runs on a CPU in "
        "minutes. Models that need a download first are listed on the Generate page.")
    chosen = next(c for c in available if c.name == model)
    # The methods the model's family trains (SD3: no full DreamBooth), and why not the others.
    refused = {name: refusal(chosen.family, _default_settings(name, model)) for name in METHODS}
    methods = [name for name in METHODS if refused[name] is None]
    if st.session_state.get("train_method") not in methods:
        st.session_state["train_method"] = methods[0]
    method = first[0].radio("Method", methods, format_func=METHODS.get, horizontal=True,
                            key="train_method")
    for name in METHODS:
        if refused[name] is not None:
            first[0].caption(f"{METHODS[name].split(' — ')[0]} is not offered for {model}: "
                             f"{refused[name]}")
    settings_class, basic, advanced = METHOD_FIELDS[method]
    # Options the family's trainer refuses are not offered (SD3: no DDPM options).
    shown = _offered_settings(chosen, method, basic + advanced)
    basic = [name for name in basic if name in shown]
    advanced = [name for name in advanced if name in shown]
    # Enter in a field never starts a run: only the button does.
    with st.form(f"train_settings_{method}", border=True, enter_to_submit=False):
        values = {}
        columns = st.columns(4)
        for index, name in enumerate(basic):
            values[name] = _setting(columns[index % 4], method, settings_class, name, chosen)
        if method == "dreambooth-full":
            st.caption(_memory_note(model))
        with st.expander("Advanced settings"):
            columns = st.columns(4)
            for index, name in enumerate(advanced):
                values[name] = _setting(columns[index % 4], method, settings_class, name, chosen)
        start = st.form_submit_button("Start training", type="primary", icon=":material/school:",
                                      disabled=folder is None)
    if folder is None:
        st.caption("Add images above to start.")
    if start:
        if not st.session_state.get("checked_usable"):
            raise ValueError("The data set has no usable image; add images first.")
        settings = _build_settings(data, folder, method, chosen, values)
        _ask_or_start(data, folder, settings)
    _pending_start(data)
    _queue_list(data)


def _default_settings(method, model):
    """`method`'s settings at their defaults for `model`: what the family's check is asked."""
    settings_class = METHOD_FIELDS[method][0]
    lora = {"lora_rank": DEFAULT_LORA_RANK} if method == "dreambooth-lora" else {}
    return settings_class(model=model, **lora)


def _offered_settings(chosen, method, names):
    """The settings of `names` that `chosen`'s family lets `method` set; the companions of
    pivotal tuning's token go with it."""
    settings = _default_settings(method, chosen.name)
    refused = {name for name in names if refuses_setting(chosen.family, settings, name)}
    if method != "textual-inversion" and "token" in refused:
        refused |= set(PIVOTAL_FIELDS)
    return [name for name in names if name not in refused]


def _setting(column, method, settings_class, name, chosen):
    """The input of one setting, with the defaults that depend on the model or method."""
    key = field_key(method, name)
    options = {}
    default = {
        "init_word": chosen.initializer_word,
        "token": "<my-concept>",
        "instance_prompt": chosen.instance_prompt,
        "lr": DEFAULT_LEARNING_RATES[method],
        "lora_rank": DEFAULT_LORA_RANK,
        "train_text_encoder": True if method == "dreambooth-lora" else dataclasses.MISSING,
    }.get(name, dataclasses.MISSING)
    if method != "textual-inversion" and name in ("token", "init_word"):
        # DreamBooth's token is pivotal tuning, off unless asked for.
        default = dataclasses.MISSING
    if name in ("init_word", "instance_prompt", "resolution"):
        key += f"_{chosen.name}"  # Each model suggests its own.
    if name == "resolution":
        options["placeholder"] = f"{chosen.image_size} ({chosen.name}'s own)"
    if name == "train_text_encoder":
        options["help"] = TEXT_ENCODER_HELP
    if name == "class_prompt":
        options["help"] = ("e.g. 'a photo of a toy': the model first makes class images of "
                           "the class (prior preservation), which keeps the class's meaning. "
                           "Slower; leave empty to skip.")
    if name == "token" and method == "textual-inversion":
        options["help"] = ("The new word you will write in prompts, such as <my-concept>: "
                           "it must not be a word the model already knows.")
    elif name == "token":
        options["help"] = ("Pivotal tuning (optional): a new word, such as <my-concept>, "
                           "learned together with the LoRA. Write it in the instance prompt, "
                           "give the word it starts from, and leave the text encoder off.")
    return setting_input(column, settings_class, name, key, default=default, **options)


def _memory_note(model):
    return ("Full fine-tuning trains every UNet weight: memory is about "
            + ", ".join(f"{size} bytes per weight with {name}"
                        for name, size in BYTES_PER_TRAINED_WEIGHT.items())
            + f" (plus activations, which remat recomputes instead of keeping). {model}: "
            "see `studio models` for its size. LoRA trains a few megabytes instead.")


def _build_settings(data, folder, method, chosen, values):
    """The checked settings of the run the form asks for, on the `ModelChoice` `chosen`.

    Raises:
        SettingsError, InvalidInputError: a setting is invalid, the
            model's family does not train it (`check_family_settings`), or
            the placeholder token is a word the model already knows.
    """
    model = chosen.name
    given = {name: value for name, value in values.items() if value is not None}
    if method == "dreambooth-lora":
        given.setdefault("lora_rank", DEFAULT_LORA_RANK)
    elif method == "dreambooth-full":
        given.pop("lora_rank", None)
    common = {"model": model, "data": os.path.abspath(folder),
              "cache_dir": os.path.join(data.cache, "latents"), **APP_SETTINGS}
    settings_class = METHOD_FIELDS[method][0]
    settings = settings_class(**common, **given).validate()
    if method != "textual-inversion":
        check_family_settings(chosen.family, settings)
        return settings
    from studio.app.cached_models import load_backbone
    from studio.prompts import validate_placeholder_token

    # Before launch: what the family's trainer refuses (with what only the
    # loaded model tells, SD3's resolution) and a word the model knows fail
    # here, not minutes later.
    backbone = load_backbone(model)
    check_family_settings(chosen.family, settings, backbone)
    validate_placeholder_token(settings.token, backbone.tokenizer)
    return settings


def _ask_or_start(data, folder, settings):
    """Starts the run, or asks first when a run on the same images is training."""
    name = _run_name(getattr(settings, "token", None) or settings.instance_prompt)
    request = new_run_request(settings)
    busy = [record.name for record in list_runs(data.runs)
            if record.status().is_active and record.config.get("data") == os.path.abspath(folder)]
    if busy:
        st.session_state["pending_start"] = {"run_dir": os.path.join(data.runs, name),
                                             "request": request, "busy": busy}
        return
    _start(os.path.join(data.runs, name), request)


def _start(run_dir, request):
    start_training(run_dir, request)
    st.session_state["selected_run"] = run_dir
    st.session_state.pop("pending_start", None)
    st.toast(f"Started {os.path.basename(run_dir)}")
    st.rerun()


def _pending_start(data):
    """The question asked when a run on the same data set is training: start, queue, cancel."""
    pending = st.session_state.get("pending_start")
    if not pending:
        return
    with st.container(border=True, key="pending_start_box"):
        st.warning(f"{', '.join(pending['busy'])} is already training on these images. "
                   "Start a second run at the same time (both run slower), queue it to start "
                   "when the training runs have ended, or cancel.", icon=":material/warning:")
        buttons = st.columns(3)
        if buttons[0].button("Start anyway", key="start_anyway"):
            _start(pending["run_dir"], pending["request"])
        if buttons[1].button("Queue it", key="queue_run", icon=":material/queue:"):
            RunQueue(data.runs).add(pending["run_dir"], pending["request"])
            st.session_state.pop("pending_start", None)
            st.toast(f"Queued {os.path.basename(pending['run_dir'])}")
            st.rerun()
        if buttons[2].button("Cancel", key="cancel_start"):
            st.session_state.pop("pending_start", None)
            st.rerun()


def _queue_list(data):
    queue = RunQueue(data.runs)
    entries = queue.entries()
    if not entries:
        return
    st.markdown("**Queued runs** — each starts when no run is training")
    for index, entry in enumerate(entries):
        row = st.columns([5, 1])
        row[0].caption(f"{index + 1}. {os.path.basename(entry['run_dir'])}")
        if row[1].button("Remove", key=f"unqueue-{index}", icon=":material/close:"):
            queue.remove(entry["run_dir"])
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
