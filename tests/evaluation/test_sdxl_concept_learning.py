"""SD-XL textual inversion *learns* on the shipped SD-XL shapes model (issue #18, acceptance 4).

The library's own entry point (`train_textual_inversion`, the demo's
settings) trains `<cross>` on `tiny-shapes-xl` from "square"; the run's
`{clip_l, clip_g}` file is then scored as generation applies it. About a
minute of training and a minute of scoring on 2 idle CPU cores.
"""

import pytest

from studio.cli.demo_command import DEMO_TI_SETTINGS, PLACEHOLDER
from studio.evaluation import render_concept_set
from studio.evaluation.concept_file_scores import score_concept_files
from studio.trainers import TextualInversionSettings, train_textual_inversion
from studio.trainers.run.run_directory import EMBEDDING_FILE

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.large]

MODEL = "tiny-shapes-xl"
INIT_WORD = "square"


def test_sdxl_textual_inversion_finds_the_unnamed_concept(tmp_path):
    render_concept_set(tmp_path / "concept")
    settings = TextualInversionSettings(**dict(
        DEMO_TI_SETTINGS, model=MODEL, data=str(tmp_path / "concept"), token=PLACEHOLDER,
        init_word=INIT_WORD, seed=1, sample_every=0, cache_dir=str(tmp_path / "cache")))
    # At step 0 the placeholder's rows are the initializer's: "square" is scored.
    before = score_concept_files(MODEL, INIT_WORD)
    summary = train_textual_inversion(settings, tmp_path / "run")
    assert summary["status"] == "completed"
    embedding = str(tmp_path / "run" / EMBEDDING_FILE)
    after = score_concept_files(MODEL, PLACEHOLDER, embeddings=[embedding])

    assert before["concept_fidelity"] <= 0.2, before
    assert after["concept_fidelity"] >= 0.8, after
    assert after["editability"] >= 0.5, after
