"""Embeddings: the library of embedding files; inspect, convert and export, import."""

import os
import re

import streamlit as st

from studio.app.app_state import data_folder
from studio.app.file_library import (LibraryFile, embedding_families, embedding_files,
                                     files_for_model)
from studio.app.model_catalog import model_choices
from studio.app.page_errors import errors_as_messages
from studio.app.safe_uploads import MAX_EMBEDDING_BYTES, MEBIBYTE, save_embedding_upload
from studio.embeddings.textual_inversion_embedding import ARCHITECTURE_SDXL, SDXL_ENCODERS
from studio.models.presets import SD3

FORMAT_LABELS = {
    "native": "Studio (native .safetensors, with metadata)",
    "diffusers": "diffusers (learned_embeds)",
    "kohya": "kohya / AUTOMATIC1111 (.safetensors)",
    "a1111": "AUTOMATIC1111 (.pt)",
}
# Added to exported file names: `<token>-diffusers.safetensors`, ...
EXPORT_SUFFIXES = {"native": "-studio", "diffusers": "-diffusers"}
TOP_K = 5
# Nearest tokens looked at to find TOP_K readable words among them.
CANDIDATES = 60
# What a text encoder's width says about the model family.
FAMILIES_BY_WIDTH = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SD-XL"}
_END_OF_WORD = "</w>"
_WORD = re.compile(r"[a-z][a-z'-]*")


def readable_word(token):
    """`circle</w>` -> "circle"; a word piece (`circ`) or stray character (`ă`) -> None."""
    if not token.endswith(_END_OF_WORD):
        return None  # The start of a longer word.
    word = token[: -len(_END_OF_WORD)]
    return word if _WORD.fullmatch(word) else None


def model_family(embedding, path):
    """The family an embedding is for, from its layout (`embedding_families`) and width."""
    if embedding.architecture == ARCHITECTURE_SDXL:
        # `{clip_l, clip_g}`: SD-XL's layout, which SD3 reads too; the studio's
        # SD3 files say they are SD3's.
        return "SD3" if embedding_families(path) == {SD3} else "SD-XL"
    width = embedding.text_encoder_width
    if width in FAMILIES_BY_WIDTH:
        return FAMILIES_BY_WIDTH[width]
    same = [choice.name for choice in model_choices() if choice.text_encoder_width == width]
    return f"{' / '.join(same)} ({width} wide)" if same else f"unknown ({width} wide)"


@st.cache_data(show_spinner="Comparing with the models on this machine…", max_entries=32)
def _token_table_hash(model):
    """The token-table hash of an offline preset (`DiffusionBackbone.token_table_hash`)."""
    from studio.app.cached_models import load_backbone

    return load_backbone(model).token_table_hash


def _fitting_models(path):
    """The offline `ModelChoice`s the embedding file at `path` loads into (`files_for_model`)."""
    file = LibraryFile(os.path.basename(path), path)
    return [choice for choice in model_choices()
            if choice.available and files_for_model([file], choice)]


def _matching_models(embedding, path):
    """The offline models whose token table the embedding was trained on, in words."""
    if not embedding.token_table_hash:
        return ""
    same = [choice.name for choice in _fitting_models(path)
            if _token_table_hash(choice.name) == embedding.token_table_hash]
    return ", ".join(same) if same else "no model on this machine (another base model)"


def render():
    st.title("Embeddings")
    st.caption("Every embedding file the studio knows: imported files and the results of "
               "your runs. Inspect one, see which words its vectors are close to, and export "
               "it for diffusers, kohya or AUTOMATIC1111.")
    data = data_folder()
    with errors_as_messages("Importing the file"):
        _import(data)
    files = embedding_files(data)
    if not files:
        st.info("No embeddings yet: import a file above, or train one on the Train page.",
                icon=":material/token:")
        return
    by_label = {file.label: file.path for file in files}
    imported = st.session_state.pop("embeddings_imported", None)
    label_of = {path: label for label, path in by_label.items()}
    if imported in label_of:  # Show the file just imported.
        st.session_state["embeddings_selected"] = label_of[imported]
    label = st.selectbox("Embedding", list(by_label), key="embeddings_selected")
    path = by_label[label]
    with errors_as_messages("Deleting the file"):
        if _delete(data, path):
            return
    with errors_as_messages("Reading the embedding"):
        from studio.embeddings import load_embedding

        embedding = load_embedding(path)
        inspect, nearest, export = st.tabs(["Inspect", "Nearest words", "Convert & export"])
        with inspect:
            _inspect(embedding, path)
        with nearest:
            _nearest(embedding, path)
        with export:
            _export(data, embedding, path)


def _import(data):
    with st.expander("Import an embedding file"):
        upload = st.file_uploader(
            f"Embedding file (.safetensors, .pt, .bin; up to {MAX_EMBEDDING_BYTES // MEBIBYTE} "
            "MiB). PyTorch files are read without running their code.",
            key="embeddings_upload",
            max_upload_size=MAX_EMBEDDING_BYTES // MEBIBYTE)
        if upload is not None and st.session_state.get("embeddings_last_upload") != upload.file_id:
            st.session_state["embeddings_last_upload"] = upload.file_id
            path, embedding = save_embedding_upload(data.embeddings, upload.name,
                                                    upload.getvalue())
            st.session_state["embeddings_imported"] = path
            st.success(f"Imported {os.path.basename(path)}: {embedding.format} file with "
                       f"{', '.join(embedding.placeholders)}.", icon=":material/check:")


def _inspect(embedding, path):
    import pandas as pd

    family = model_family(embedding, path)
    columns = st.columns(4)
    columns[0].metric("Format", embedding.format or "—")
    columns[1].metric("Model family", family)
    columns[2].metric("Width", embedding.text_encoder_width)
    columns[3].metric("Dtype", embedding.dtype)
    norms = embedding.vector_norms()
    st.dataframe(pd.DataFrame([
        {"token": key, "vectors": int(values.shape[0]), "shape": str(list(values.shape)),
         "norms": ", ".join(f"{norm:.3f}" for norm in norms[key])}
        for key, values in embedding.vectors.items()
    ]), hide_index=True, width="stretch")
    fields = {"Base model": embedding.base_model, "Base model hash": embedding.base_model_hash,
              "Matches": _matching_models(embedding, path),
              "Initializer": embedding.initializer,
              "Steps": "" if embedding.steps is None else str(embedding.steps),
              # The studio's own keys repeat the fields above.
              **{key: value for key, value in embedding.metadata.items()
                 if not key.startswith("studio.") and key != "format"}}
    shown = {key: value for key, value in fields.items() if value}
    if shown:
        st.markdown("**Metadata**")
        st.dataframe(pd.DataFrame(list(shown.items()), columns=["key", "value"]),
                     hide_index=True, width="stretch")
    st.caption(f"File: `{path}` ({os.path.getsize(path):,} bytes)")


def _nearest(embedding, path):
    from studio.embeddings import check_compatible, nearest_words

    from studio.app.cached_models import load_token_table

    available = [choice.name for choice in model_choices() if choice.available]
    # The model it was trained on, else the first it loads into.
    fitting = [choice.name for choice in _fitting_models(path)]
    default = (embedding.base_model if embedding.base_model in fitting
               else (fitting or available)[0])
    model = st.selectbox("In the vocabulary of", available, index=available.index(default),
                         key="embeddings_nearest_model")
    table, tokenizer = load_token_table(model)
    if embedding.architecture == ARCHITECTURE_SDXL:
        # SD-XL's and SD3's first text encoder is CLIP-L, the table's rows.
        clip_l = SDXL_ENCODERS[0]
        vectors_by_name = {clip_l: embedding.vectors[clip_l]}
        if model not in fitting or vectors_by_name[clip_l].shape[1] != table.shape[1]:
            raise ValueError(f"This {model_family(embedding, path)} embedding does not load "
                             f"into {model}: pick one of {', '.join(fitting) or 'none here'}.")
    else:
        vectors_by_name = embedding.vectors
        for warning in check_compatible(embedding, table.shape[1]):
            st.warning(warning)
    rows = []
    for placeholder, vectors in vectors_by_name.items():
        found = nearest_words(vectors, table, tokenizer, k=CANDIDATES)
        for index, words in enumerate(found):
            readable = [(word, similarity) for word, similarity in
                        ((readable_word(token), similarity) for token, similarity in words)
                        if word][:TOP_K]
            rows.append({"vector": f"{placeholder}[{index}]",
                         **{f"#{rank + 1}": f"{word} ({similarity:.2f})"
                            for rank, (word, similarity) in enumerate(readable)}})
    import pandas as pd

    st.caption("The words whose vectors are closest (cosine similarity): a glimpse of what "
               "the learned vectors mean. Word pieces and stray characters are left out.")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _export(data, embedding, path):
    from studio.embeddings import convert_embedding
    from studio.embeddings.embedding_files import FORMAT_EXTENSIONS

    with st.form("export_embedding"):
        columns = st.columns(3)
        format = columns[0].selectbox("Format", list(FORMAT_LABELS), format_func=FORMAT_LABELS.get,
                                      key="export_format")
        dtype = columns[1].selectbox("Dtype", ["float32", "float16"], key="export_dtype")
        placeholder = columns[2].text_input("Token name", value=embedding.placeholders[0],
                                            key="export_placeholder",
                                            help="kohya and A1111 files are named after it.")
        submitted = st.form_submit_button("Convert", icon=":material/sync_alt:")
    if not submitted:
        return
    if not placeholder.strip():
        raise ValueError("Give the token a name.")
    from studio.app.safe_uploads import safe_file_name, unused_path

    extension = FORMAT_EXTENSIONS[format][0]
    stem = os.path.splitext(safe_file_name(placeholder.strip() + extension, (extension,)))[0]
    # kohya and AUTOMATIC1111 take the file's name as the token: it stays the token's.
    # The other formats say what they are, so that no two downloads share a name.
    suffix = EXPORT_SUFFIXES.get(format, "")
    out = unused_path(data.exports, stem + suffix + extension)
    convert_embedding(path, out, format=format,
                      dtype=None if format == "native" else dtype,
                      placeholder=placeholder.strip()
                      if len(embedding.placeholders) == 1 else None)
    with open(out, "rb") as file:
        content = file.read()
    st.success(f"Wrote `{out}` ({format}).", icon=":material/check:")
    st.download_button(f"Download {os.path.basename(out)}", content,
                       file_name=os.path.basename(out), icon=":material/download:",
                       key="export_download")


def _delete(data, path):
    """A Delete button for library files (run results go with their run); True once deleted."""
    if not data.contains(path) or not os.path.commonpath(
            [os.path.realpath(data.embeddings), os.path.realpath(path)]) == os.path.realpath(
            data.embeddings):
        st.caption("A run's result: delete the run on the Runs page to remove it.")
        return False
    confirm = f"confirm-delete-embedding-{path}"
    if not st.session_state.get(confirm):
        if st.button("Delete this file", icon=":material/delete:", key="embedding-delete"):
            st.session_state[confirm] = True
            st.rerun()
        return False
    st.warning(f"Delete {os.path.basename(path)} from the library?", icon=":material/warning:")
    row = st.columns(2)
    if row[0].button("Yes, delete it", type="primary", key="embedding-delete-yes"):
        os.remove(path)
        st.session_state.pop(confirm, None)
        st.session_state.pop("embeddings_selected", None)
        st.toast(f"Deleted {os.path.basename(path)}")
        st.rerun()
    if row[1].button("Keep it", key="embedding-delete-no"):
        st.session_state.pop(confirm, None)
        st.rerun()
    return False
