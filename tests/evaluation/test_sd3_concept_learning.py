"""SD3 textual inversion *learns* on the shipped SD3-family shapes model (issue #19, acceptance 3).

`tiny-shapes-sd3` is the shapes world on keras-hub's SD3 classes (CLIP-L
and CLIP-G, the MMDiT, the 16-channel VAE, flow matching). The library's
entry point trains on it as on any SD3 model: textual inversion learns
`<cross>` (a shape no word names) in both CLIP tables, and the trained file
is scored as generation applies it. A few CPU minutes.

DreamBooth LoRA on it has no learning test yet: with CLIP-L/G frozen, the
MMDiT LoRA alone did not both learn "a sks circle" and keep "a circle"
diverse on more than one seed (see the issue's note).
"""

import pytest

from studio.cli.demo_command import DEMO_TI_SETTINGS, PLACEHOLDER
from studio.evaluation import render_concept_set
from studio.evaluation.concept_file_scores import score_concept_files
from studio.trainers import TextualInversionSettings, train_textual_inversion
from studio.trainers.run.run_directory import EMBEDDING_FILE

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.large]

MODEL = "tiny-shapes-sd3"
INIT_WORD = "square"


def test_sd3_textual_inversion_finds_the_unnamed_concept(tmp_path):
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
    print(f"SD3 textual inversion: before {before}, after {after}")

    assert before["concept_fidelity"] <= 0.2, before
    assert after["concept_fidelity"] >= 0.8, after
    assert after["editability"] >= 0.5, after
