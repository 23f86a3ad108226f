"""Every base model is known by its token table's hash (issue #23, item 22).

An embedding or LoRA trained on one model and loaded into another of the
same width warns, whatever the models are called or however they were
loaded (preset, saved folder); files without the hash still load quietly.
"""

import json
import logging
import warnings

import numpy as np
import pytest

from studio.embeddings import (TextualInversionEmbedding, backbone_with_embeddings,
                               load_embedding, save_embedding)
from studio.interop import load_backbone
from studio.lora.lora_weights import TOKEN_TABLE_HASH_KEY, LoRAWeights
from studio.models import StableDiffusionBackbone
from studio.models.token_table_hash import token_table_hash

TOKEN = "<redc>"
WIDTH = 32  # tiny's text encoder


@pytest.fixture(scope="module")
def tiny():
    return StableDiffusionBackbone.from_preset("tiny")


@pytest.fixture(scope="module")
def other_tiny(tmp_path_factory):
    """Another 32-wide model, saved and loaded back as a user's model is."""
    folder = tmp_path_factory.mktemp("models") / "my-model"
    StableDiffusionBackbone.from_preset("tiny", seed=7).save_to_preset(folder)
    return load_backbone(str(folder))


def _trained_on(backbone, tmp_path, **fields):
    embedding = TextualInversionEmbedding(
        {TOKEN: np.full((1, WIDTH), 0.01, "float32")}, base_model=backbone.name, **fields)
    path = tmp_path / "redc.safetensors"
    save_embedding(embedding, path)
    return load_embedding(path)


def _warnings_of(backbone, embedding):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone_with_embeddings(backbone, [embedding])
    return [str(warning.message) for warning in caught if warning.category is UserWarning]


def test_hash_is_of_the_token_table_and_computed_once(tiny):
    table = tiny.token_embedding.embeddings.numpy()
    assert tiny.token_table_hash == token_table_hash(table)
    assert len(tiny.token_table_hash) == 64
    assert tiny.token_table_hash is tiny.token_table_hash


def test_saved_model_records_its_hash_in_backbone_json(other_tiny, tmp_path):
    folder = tmp_path / "saved"
    other_tiny.save_to_preset(folder)
    recorded = json.loads((folder / "backbone.json").read_text())["token_table_hash"]
    assert recorded == token_table_hash(other_tiny.token_embedding.embeddings.numpy())
    assert load_backbone(str(folder)).token_table_hash == recorded


def test_embedding_trained_on_tiny_warns_in_another_model_of_its_width(tiny, other_tiny,
                                                                      tmp_path):
    embedding = _trained_on(tiny, tmp_path, token_table_hash=tiny.token_table_hash)
    assert embedding.token_table_hash == tiny.token_table_hash
    messages = _warnings_of(other_tiny, embedding)
    assert len(messages) == 1 and "trained on another base model (tiny)" in messages[0]
    assert _warnings_of(tiny, embedding) == []
    # The same model, rebuilt in another way, is the same base.
    assert _warnings_of(StableDiffusionBackbone.from_preset("tiny"), embedding) == []


def test_old_embedding_without_the_hash_loads_quietly(tiny, other_tiny, tmp_path):
    embedding = _trained_on(tiny, tmp_path)
    assert embedding.token_table_hash == ""
    assert _warnings_of(other_tiny, embedding) == []


def test_textual_inversion_trainer_writes_the_hash(tiny, tmp_path):
    from studio.trainers.textual_inversion.textual_inversion_trainer import (
        TextualInversionTrainer)

    trainer = TextualInversionTrainer(tiny, TOKEN, "cat", num_vectors=1, seed=1)
    path = trainer.save_embedding(tmp_path / "embedding.safetensors", steps=0)
    assert load_embedding(path).token_table_hash == tiny.token_table_hash


def test_lora_of_another_base_warns_when_applied(other_tiny, caplog):
    lora = LoRAWeights({}, {TOKEN_TABLE_HASH_KEY: "0" * 64, "studio_base_model": "tiny"})
    with caplog.at_level(logging.WARNING, logger="studio.lora.lora_weights"):
        lora.apply(other_tiny)
    assert "trained on another base model (tiny" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="studio.lora.lora_weights"):
        LoRAWeights({}, {TOKEN_TABLE_HASH_KEY: other_tiny.token_table_hash}).apply(other_tiny)
        LoRAWeights({}, {}).apply(other_tiny)
    assert "another base model" not in caplog.text
