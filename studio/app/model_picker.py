"""The base-model picker: every registered preset, unavailable ones explained."""

import streamlit as st

from studio.app.model_catalog import model_choices


def pick_model(key):
    """A selectbox of the presets; returns the chosen available `ModelChoice`, or None.

    Presets that need a download are listed too, marked so, and choosing
    one shows how to get its files.
    """
    choices = model_choices()
    by_label = {choice.label: choice for choice in choices}
    label = st.selectbox("Base model", list(by_label), key=key,
                         help="Presets marked ✓ load offline.")
    choice = by_label[label]
    st.caption(choice.description)
    if not choice.available:
        st.warning(f"**{choice.name}** is not on this machine yet. {choice.how_to_get}",
                   icon=":material/cloud_download:")
        return None
    return choice
