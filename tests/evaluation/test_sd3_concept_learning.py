"""SD3 textual inversion and DreamBooth *learn* on the shipped SD3 shapes model (#19, acceptance 3).

`tiny-shapes-sd3` is the shapes world on keras-hub's SD3 classes (CLIP-L
and CLIP-G, the MMDiT, the 16-channel VAE, flow matching). The library's
entry point trains on it as on any SD3 model: textual inversion learns
`<cross>` (a shape no word names) in both CLIP tables, and the trained file
is scored as generation applies it. A few CPU minutes.

DreamBooth LoRA with pivotal tuning (`FAMILY_DREAMBOOTH_SETTINGS`: a new
token's CLIP-L/G rows and MMDiT LoRA, 1000 steps) learns "a <sks> circle",
and the prior keeps "a circle" as varied as before, where training without
it collapses the class onto the instance. Measured at seeds 0-4 (40 images
each, base fidelity 0.025): instance fidelity 1.0 at each, class diversity
0.80-1.00x the base model's. (Before `tiny-shapes-sd3`'s decoder phase
the VAE blurred the instance and seed 2 scored 0.25.) The test trains at
seed 3.
"""

import pytest

pytestmark = [pytest.mark.tensorflow_only, pytest.mark.large]

# The seed the DreamBooth test trains with; see the docstring for the others.
DREAMBOOTH_SEED = 3
# Steps of the run without prior preservation (the recipe's 1000 with it).
NO_PRIOR_STEPS = 500


def test_sd3_textual_inversion_finds_the_unnamed_concept(learn_unnamed_concept):
    before, after = learn_unnamed_concept("tiny-shapes-sd3")

    assert before["concept_fidelity"] <= 0.2, before
    assert after["concept_fidelity"] >= 0.8, after
    assert after["editability"] >= 0.5, after


def test_sd3_dreambooth_learns_the_instance_and_the_prior_keeps_the_class(tmp_path):
    from studio.evaluation.dreambooth_evaluation import evaluate_dreambooth

    # The run without the prior stops at half the steps: the class is taken
    # over by then (seed 3: fidelity 0.95, diversity 0.0x at 500 steps),
    # and CI's large step saves about 50 s.
    runs = {prior: evaluate_dreambooth(str(tmp_path / f"prior-{prior}"), prior_preservation=prior,
                                       model="tiny-shapes-sd3", seed=DREAMBOOTH_SEED,
                                       steps=None if prior else NO_PRIOR_STEPS)
            for prior in (True, False)}  # fmt: skip
    with_prior, without = runs[True], runs[False]
    print("SD3 DreamBooth with prior", with_prior, "without", without)

    assert with_prior["instance_prompt"] == "a <sks> circle"
    assert with_prior["base_instance_fidelity"] <= 0.2, with_prior
    # Without the prior the instance is learned to the 0.8 and takes
    # the class over (0.95 and 0.0x; before the decoder phase 1.0 and 0.10x).
    assert without["instance_fidelity"] >= 0.8, without
    assert without["diversity_ratio"] <= 0.3, without
    # With it the class stays varied and the instance is still learned to
    # the 0.8: measured 1.0 and 0.97x alone and the same beside the
    # README command's two workers (before the decoder phase: 1.0 alone,
    # 0.90 and 0.77x in CI's large step).
    assert with_prior["instance_fidelity"] >= 0.8, with_prior
    assert with_prior["diversity_ratio"] >= 0.6, with_prior
