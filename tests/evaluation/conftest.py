"""Fixtures of the concept-learning tests."""

import pytest


@pytest.fixture
def learn_unnamed_concept(tmp_path):
    """`learn(model) -> (before, after)`: textual inversion of `<cross>` from "square", scored.

    The library's entry point with the demo's settings (seed 1) trains the
    placeholder on `model`; `before` scores "square" (the placeholder's
    rows at step 0), `after` the placeholder with the run's embedding file,
    as generation applies it.
    """
    from studio.cli.demo_command import DEMO_TI_SETTINGS, PLACEHOLDER
    from studio.evaluation import render_concept_set
    from studio.evaluation.concept_file_scores import score_concept_files
    from studio.trainers import TextualInversionSettings, train_textual_inversion
    from studio.trainers.run.run_directory import EMBEDDING_FILE

    init_word = "square"

    def learn(model):
        render_concept_set(tmp_path / "concept")
        settings = TextualInversionSettings(**dict(
            DEMO_TI_SETTINGS, model=model, data=str(tmp_path / "concept"), token=PLACEHOLDER,
            init_word=init_word, seed=1, sample_every=0, cache_dir=str(tmp_path / "cache")))
        before = score_concept_files(model, init_word)
        summary = train_textual_inversion(settings, tmp_path / "run")
        assert summary["status"] == "completed"
        after = score_concept_files(model, PLACEHOLDER,
                                    embeddings=[str(tmp_path / "run" / EMBEDDING_FILE)])
        print(f"{model} textual inversion: before {before}, after {after}")
        return before, after

    return learn
