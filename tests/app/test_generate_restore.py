"""The Generate page's "Use these settings": an image's infotext back into the form."""

import pytest

from studio.app import generate_page
from studio.images.generation_parameters import GenerationParameters


@pytest.mark.parametrize("written, restored", [
    ("Euler a", "euler_a"), ("euler a", "euler_a"), ("DPM++ 2M", "dpmpp_2m"),
    ("dpmpp_2m", "dpmpp_2m"), ("DDIM", "ddim"), ("UniPC", None),
])
def test_the_sampler_comes_back_by_any_of_its_names(monkeypatch, written, restored):
    state = {"generate_sampler": "keep"}
    monkeypatch.setattr(generate_page.st, "session_state", state)
    generate_page._restore(GenerationParameters(prompt="a fox", sampler=written, steps=12,
                                                seed=7, width=64, height=48,
                                                extra={"Denoising strength": "0.6"}))
    # A sampler the studio lacks leaves the form's own.
    assert state["generate_sampler"] == (restored or "keep")
    assert (state["generate_prompt"], state["generate_steps"], state["generate_seed"],
            state["generate_width"], state["generate_height"]) == ("a fox", 12, 7, 64, 48)
    assert state["generate_strength"] == 0.6
    assert state[generate_page.FORM_MEMORY]["generate_seed"] == 7
