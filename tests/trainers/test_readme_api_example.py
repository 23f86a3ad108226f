"""The README's Python example runs as written, with fewer steps."""

import json

import pytest

pytestmark = pytest.mark.tensorflow_only

MARKER = "<!-- python-api-example -->"
# The example's step counts, and the few the test trains and samples with.
SHORTER = {"steps=600": "steps=3", "num_steps=25": "num_steps=2"}


@pytest.fixture
def eager_steps(eager_compile, monkeypatch):
    """Eager train steps, as in test_train_command.py: tracing costs more than 3 steps."""
    from studio.trainers.textual_inversion.textual_inversion_trainer import TextualInversionTrainer

    eager_compile(monkeypatch, TextualInversionTrainer)


@pytest.fixture
def readme_example(readme_python_blocks):
    """The Python block after the marker in README.md."""
    blocks = readme_python_blocks(MARKER)
    assert len(blocks) == 1
    return blocks[0]


def test_the_readme_example_is_short_and_uses_the_library_api(readme_example):
    lines = [line for line in readme_example.splitlines()
             if line.strip() and not line.startswith(("from ", "import "))]
    assert len(lines) <= 12
    assert "from studio.trainers import TextualInversionSettings, train_textual_inversion" in (
        readme_example)


@pytest.mark.large
def test_the_readme_example_trains_samples_and_exports(
    readme_example, tmp_path, monkeypatch, eager_steps
):
    from studio.embeddings import load_embedding
    from studio.images import read_parameters

    code = readme_example
    for long, short in SHORTER.items():
        assert long in code
        code = code.replace(long, short)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    summary = json.loads((tmp_path / "runs" / "cross" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3
    config = json.loads((tmp_path / "runs" / "cross" / "config.json").read_text())
    assert config["method"] == "textual_inversion" and config["token"] == "<cross>"
    assert read_parameters(tmp_path / "green-cross.png").prompt == "a green <cross>"
    trained = load_embedding(tmp_path / "runs" / "cross" / "embedding.safetensors")
    exported = load_embedding(tmp_path / "cross.pt")
    assert exported.format == "a1111"
    assert [vectors.shape for vectors in exported.vectors.values()] == [
        trained.vectors["<cross>"].shape]
