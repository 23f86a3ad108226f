"""SD3 textual inversion and DreamBooth LoRA *learn* on the shipped SD3-family shapes model (issue #19, acceptance 3).

`tiny-shapes-sd3` is the shapes world on keras-hub's SD3 classes (CLIP-L
and CLIP-G, the MMDiT, the 16-channel VAE, flow matching). The library's
entry points train on it as on any SD3 model: textual inversion learns
`<cross>` (a shape no word names) in both CLIP tables; DreamBooth learns
the world's instance ("a sks circle": a red-and-cyan striped circle) with
MMDiT LoRA, and with prior preservation keeps "a circle" as diverse as the
base model draws it. The trained files are scored as generation applies
them. Each a few CPU minutes.
"""

import pytest

from studio.cli.demo_command import DEMO_TI_SETTINGS, PLACEHOLDER
from studio.evaluation import render_concept_set
from studio.evaluation.concept_file_scores import score_concept_files
from studio.evaluation.dreambooth_evaluation import evaluate_dreambooth
from studio.evaluation.model_evaluator import INSTANCE_CONCEPT
from studio.trainers import TextualInversionSettings, train_textual_inversion
from studio.trainers.run.run_directory import EMBEDDING_FILE

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.large]

MODEL = "tiny-shapes-sd3"
INIT_WORD = "square"

# SD3 DreamBooth trains LoRA on the MMDiT only (CLIP-L/G stay frozen): the
# joint attention reads the caption's tokens, "sks" among them, through
# adapted context blocks, so no text-encoder LoRA is needed.
SD3_DREAMBOOTH_SETTINGS = {
    "train_text_encoder": False,
    "lora_rank": 16,
    "lora_feed_forward": True,
    "steps": 600,
    "lr": 2e-3,
}


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


def test_sd3_dreambooth_lora_learns_the_instance_and_the_prior_keeps_the_class(tmp_path):
    before = score_concept_files(MODEL, "sks circle", concept=INSTANCE_CONCEPT)
    scores = evaluate_dreambooth(str(tmp_path / "prior"), prior_preservation=True, model=MODEL,
                                 settings=SD3_DREAMBOOTH_SETTINGS)
    print(f"SD3 DreamBooth LoRA: before {before}, with prior preservation {scores}")

    assert before["concept_fidelity"] <= 0.2, before
    assert scores["instance_fidelity"] >= 0.8, scores
    assert scores["diversity_ratio"] >= 0.8, scores
