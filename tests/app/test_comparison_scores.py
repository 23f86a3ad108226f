"""The Compare page's scoring hook calls an evaluation module's function when there is one."""

import sys
import types

import numpy as np

from studio.app.comparison_scores import EVALUATION_MODULE, score_comparison

IMAGES = {"base": np.zeros((2, 8, 8, 3), "uint8")}
PROMPTS = {"base": ["a photo of a toy", "a toy on a beach"]}


def test_scores_come_from_the_evaluation_function(monkeypatch):
    module = types.ModuleType(EVALUATION_MODULE)
    calls = []

    def fake_scores(images, prompts, reference_images, model=None):
        calls.append((sorted(images), prompts, reference_images, model))
        return {label: {"clip_t": 0.5} for label in images}

    module.score_comparison = fake_scores
    monkeypatch.setitem(sys.modules, EVALUATION_MODULE, module)
    assert score_comparison(IMAGES, PROMPTS, model="tiny") == {"base": {"clip_t": 0.5}}
    assert calls == [(["base"], PROMPTS, None, "tiny")]


def test_no_scores_without_the_function(monkeypatch):
    monkeypatch.setitem(sys.modules, EVALUATION_MODULE, types.ModuleType(EVALUATION_MODULE))
    assert score_comparison(IMAGES, PROMPTS) is None
