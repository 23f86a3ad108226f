"""Embedding files: every format round-trips, and other tools' files load."""

import importlib.util
import os

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import studio
from studio.embeddings import EmbeddingFormatError, TextualInversionEmbedding
from studio.embeddings import UnsafePickleError
from studio.embeddings import convert_embedding, load_embedding, save_embedding
from studio.files import atomic_write
from studio.tensor_files.torch_pickle_reader import load_torch_pickle

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES_FOLDER = os.path.join(HERE, "fixtures")


def _load_fixture_maker():
    # Not importable as a module under --import-mode=importlib: load by path.
    spec = importlib.util.spec_from_file_location(
        "embedding_fixture_maker", os.path.join(HERE, "make_fixtures.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixture_maker = _load_fixture_maker()


def _bits(array):
    """The raw bit patterns, so that -0.0 != 0.0 and NaNs compare."""
    array = np.asarray(array)
    return array.view(np.uint32 if array.dtype == np.float32 else np.uint16)


def _metadata(path):
    with safetensors.safe_open(str(path), framework="numpy") as file:
        return file.metadata()


# --- Round trips -----------------------------------------------------------------


@pytest.mark.parametrize(
    "chain",
    [
        # native -> diffusers -> kohya -> A1111 -> native, through each extension.
        [("native", ".safetensors"), ("diffusers", ".bin"), ("kohya", ".safetensors"),
         ("a1111", ".pt"), ("native", ".safetensors")],
        [("native", ".safetensors"), ("diffusers", ".safetensors"), ("kohya", ".pt"),
         ("a1111", ".bin"), ("native", ".safetensors")],
    ],
)
def test_round_trip_through_every_format_is_bit_exact(tmp_path, random_vectors, chain):
    original = random_vectors((3, 768), extremes=True)
    embedding = TextualInversionEmbedding({"cat-toy": original}, base_model="sd-v1")
    for step, (format, extension) in enumerate(chain):
        # Named after the token: kohya's `.pt` cannot hold the name, and
        # every tool then takes the file's name.
        path = tmp_path / str(step) / f"cat-toy{extension}"
        save_embedding(embedding, path, format=format)
        embedding = load_embedding(path)
        assert (embedding.format, embedding.placeholders) == (format, ["cat-toy"])
        assert embedding.dtype == "float32"
        np.testing.assert_array_equal(_bits(embedding.vectors["cat-toy"]), _bits(original))


def test_kohya_safetensors_keeps_the_token_name_whatever_the_file_is_called(tmp_path, cat_toy):
    path = save_embedding(cat_toy, tmp_path / "step-500.safetensors", format="kohya")
    assert load_embedding(path).placeholders == ["<cat-toy>"]
    path = save_embedding(cat_toy, tmp_path / "step-500.pt", format="kohya")
    assert load_embedding(path).placeholders == ["step-500"]  # Not stored: the file's name.


def test_native_keeps_provenance(tmp_path, cat_toy):
    path = save_embedding(cat_toy, tmp_path / "cat.safetensors")
    loaded = load_embedding(path)
    assert loaded.format == "native"
    assert (loaded.base_model, loaded.base_model_hash) == ("sd-v1", cat_toy.base_model_hash)
    assert (loaded.initializer, loaded.steps) == ("toy", 3000)


def test_native_file_is_a_diffusers_file_with_our_metadata(tmp_path, cat_toy):
    path = save_embedding(cat_toy, tmp_path / "learned_embeds.safetensors")
    # Read with safetensors itself, as diffusers does.
    tensors = safetensors.numpy.load_file(str(path))
    assert list(tensors) == ["<cat-toy>"]
    assert tensors["<cat-toy>"].dtype == np.float32 and tensors["<cat-toy>"].shape == (2, 768)
    metadata = _metadata(path)
    assert metadata["studio.created_by"] == f"keras-sd-studio {studio.__version__}"
    assert metadata["studio.format_version"] == "1"
    assert metadata["studio.base_model"] == "sd-v1"
    assert metadata["studio.base_model_hash"] == cat_toy.base_model_hash
    assert metadata["studio.text_encoder_width"] == "768"
    assert metadata["studio.placeholder"] == "<cat-toy>"
    assert metadata["studio.initializer"] == "toy"
    assert metadata["studio.num_vectors"] == "2"
    assert metadata["studio.steps"] == "3000"


def test_several_placeholders_in_one_file(tmp_path, random_vectors):
    embedding = TextualInversionEmbedding(
        {"<a>": random_vectors((1, 32), 1), "<b>": random_vectors((3, 32), 2)}
    )
    for format, extension in [("native", ".safetensors"), ("diffusers", ".bin")]:
        loaded = load_embedding(save_embedding(embedding, tmp_path / f"x{extension}", format))
        assert loaded.num_vectors == {"<a>": 1, "<b>": 3}
        for key in ("<a>", "<b>"):
            np.testing.assert_array_equal(_bits(loaded.vectors[key]), _bits(embedding.vectors[key]))
    assert _metadata(tmp_path / "x.safetensors")["studio.placeholders"] == '["<a>", "<b>"]'
    with pytest.raises(ValueError, match=r"holds one placeholder.*select"):
        save_embedding(embedding, tmp_path / "x.pt", format="a1111")
    single = load_embedding(save_embedding(embedding.select("<b>"), tmp_path / "b.pt", "a1111"))
    assert single.placeholders == ["<b>"]


def test_fp16_kohya_reads_back_as_fp16(tmp_path, cat_toy):
    path = save_embedding(cat_toy, tmp_path / "cat.safetensors", format="kohya", dtype="float16")
    loaded = load_embedding(path)
    assert (loaded.format, loaded.dtype) == ("kohya", "float16")
    vectors = loaded.vectors["<cat-toy>"]
    assert vectors.dtype == np.float16
    original = cat_toy.vectors["<cat-toy>"]
    np.testing.assert_array_equal(vectors, original.astype(np.float16))
    assert not np.array_equal(vectors.astype(np.float32), original)  # Really fp16 precision.
    # Converting keeps float16 unless asked; native widens it exactly.
    again = load_embedding(save_embedding(loaded, tmp_path / "cat.pt", format="a1111"))
    assert again.dtype == "float16"
    native = load_embedding(save_embedding(loaded, tmp_path / "n.safetensors"))
    assert native.dtype == "float32"
    np.testing.assert_array_equal(native.vectors["<cat-toy>"], vectors.astype(np.float32))


def test_kohya_file_has_kohya_metadata_and_our_name(tmp_path, cat_toy, random_vectors):
    path = save_embedding(cat_toy, tmp_path / "anything.safetensors", format="kohya")
    tensors = safetensors.numpy.load_file(str(path))
    assert list(tensors) == ["emb_params"]
    metadata = _metadata(path)
    assert metadata["modelspec.architecture"] == "stable-diffusion-v1/textual-inversion"
    assert metadata["modelspec.sai_model_spec"] == "1.0.1"
    assert metadata["modelspec.trigger_phrase"] == "<cat-toy>"
    assert load_embedding(path).placeholders == ["<cat-toy>"]
    sd2 = TextualInversionEmbedding({"x": random_vectors((1, 1024))})
    path = save_embedding(sd2, tmp_path / "sd2.safetensors", format="kohya")
    assert _metadata(path)["modelspec.architecture"] == "stable-diffusion-v2-512/textual-inversion"


def test_a1111_file_layout(tmp_path, cat_toy):
    path = save_embedding(cat_toy, tmp_path / "cat.pt", format="a1111")
    obj = load_torch_pickle(path)
    assert obj["string_to_token"] == {"*": 265}
    assert list(obj["string_to_param"]) == ["*"]
    np.testing.assert_array_equal(obj["string_to_param"]["*"].numpy(), cat_toy.vectors["<cat-toy>"])
    assert (obj["name"], obj["step"]) == ("<cat-toy>", 3000)
    assert obj["sd_checkpoint"] == cat_toy.base_model_hash[:10]
    assert obj["sd_checkpoint_name"] == "sd-v1"
    loaded = load_embedding(path)
    assert (loaded.format, loaded.steps, loaded.base_model) == ("a1111", 3000, "sd-v1")


def test_format_is_found_by_content_not_extension(tmp_path, cat_toy):
    kohya = save_embedding(cat_toy, tmp_path / "cat.safetensors", format="kohya")
    renamed = tmp_path / "cat.pt"
    os.replace(kohya, renamed)
    assert load_embedding(renamed).format == "kohya"
    a1111 = save_embedding(cat_toy, tmp_path / "a.pt", format="a1111")
    misnamed = tmp_path / "a.safetensors"
    os.replace(a1111, misnamed)
    assert load_embedding(misnamed).format == "a1111"


def test_convert_renames_and_changes_dtype(tmp_path, cat_toy):
    source = save_embedding(cat_toy, tmp_path / "cat.safetensors")
    written = convert_embedding(
        source, tmp_path / "out.safetensors", format="kohya", dtype="float16", placeholder="<toy>"
    )
    assert written.placeholders == ["<toy>"]
    loaded = load_embedding(tmp_path / "out.safetensors")
    assert (loaded.placeholders, loaded.dtype) == (["<toy>"], "float16")


# --- Files written by PyTorch (fixtures, no torch needed) --------------------------------


@pytest.mark.parametrize("name", sorted(fixture_maker.FIXTURES))
def test_torch_written_fixtures_load(name):
    spec = fixture_maker.FIXTURES[name]
    embedding = load_embedding(os.path.join(FIXTURES_FOLDER, name))
    assert embedding.format == spec["format"]
    assert embedding.dtype == spec["dtype"]
    assert sorted(embedding.placeholders) == sorted(spec["vectors"])
    for key, (shape, seed, dtype) in spec["vectors"].items():
        expected = fixture_maker.expected_values(shape, seed, dtype)
        expected = expected.reshape((-1, shape[-1]))
        np.testing.assert_array_equal(_bits(embedding.vectors[key]), _bits(expected))
    if "step" in spec:
        assert embedding.steps == spec["step"]
        assert embedding.metadata["sd_checkpoint"] == spec["sd_checkpoint"]


def test_sdxl_file_writes_back_as_native_or_kohya_only(tmp_path):
    embedding = load_embedding(os.path.join(FIXTURES_FOLDER, "sdxl.safetensors"))
    assert (embedding.architecture, embedding.format) == ("sd-xl", "sd-xl")
    assert embedding.text_encoder_width == 8 + 12
    named = embedding.renamed("<x>")
    for format in ("native", "kohya"):
        back = load_embedding(save_embedding(named, tmp_path / f"{format}.safetensors", format))
        assert back.format == format and back.metadata["studio.placeholder"] == "<x>"
        for key, vectors in embedding.vectors.items():
            np.testing.assert_array_equal(back.vectors[key], vectors)
    for format, name in (("a1111", "x.pt"), ("diffusers", "x.safetensors"), ("native", "x.pt")):
        with pytest.raises(ValueError, match="SD-XL") as error:
            save_embedding(embedding, tmp_path / name, format)
        assert "\n" not in str(error.value)


# --- Files written by PyTorch here and now ----------------------------------------


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _torch_layouts(torch, vectors):
    tensor = torch.from_numpy(vectors)
    return {
        "a1111": ({"string_to_token": {"*": 265}, "string_to_param": {"*": tensor},
                   "name": "<t>", "step": 7, "sd_checkpoint": None,
                   "sd_checkpoint_name": None}, ".pt"),
        "diffusers": ({"<t>": tensor}, ".bin"),
        "kohya": ({"emb_params": tensor}, ".pt"),
    }


@pytest.mark.parametrize("format", ["a1111", "diffusers", "kohya"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_save_files_load(tmp_path, torch, random_vectors, format, dtype):
    vectors = random_vectors((3, 64))
    obj, extension = _torch_layouts(torch, vectors)[format]
    path = tmp_path / f"t{extension}"
    torch_dtype = getattr(torch, dtype)
    # Cast every tensor of the layout.
    obj = {
        key: ({k: v.to(torch_dtype) for k, v in value.items()} if key == "string_to_param"
              else value.to(torch_dtype) if isinstance(value, torch.Tensor) else value)
        for key, value in obj.items()
    }
    torch.save(obj, path)
    loaded = load_embedding(path)
    assert (loaded.format, loaded.dtype) == (format, dtype)
    expected = torch.from_numpy(vectors).to(torch_dtype).float().numpy()
    (placeholder,) = loaded.placeholders
    assert placeholder in ("<t>", "t")
    np.testing.assert_array_equal(loaded.vectors[placeholder].astype(np.float32), expected)


def test_torch_legacy_files_load(tmp_path, torch, random_vectors):
    vectors = random_vectors((2, 16))
    path = tmp_path / "legacy.bin"
    torch.save({"<t>": torch.from_numpy(vectors)}, path, _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(_bits(load_embedding(path).vectors["<t>"]), _bits(vectors))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_safetensors_torch_files_load(tmp_path, torch, random_vectors, dtype):
    from safetensors.torch import save_file

    vectors = random_vectors((2, 64))
    tensor = torch.from_numpy(vectors).to(getattr(torch, dtype))
    save_file({"emb_params": tensor}, str(tmp_path / "k.safetensors"))
    save_file({"<a>": tensor, "<b>": tensor[:1].clone()}, str(tmp_path / "d.safetensors"),
              metadata={"format": "pt"})
    kohya = load_embedding(tmp_path / "k.safetensors")
    assert (kohya.format, kohya.dtype, kohya.placeholders) == ("kohya", dtype, ["k"])
    np.testing.assert_array_equal(kohya.vectors["k"].astype(np.float32), tensor.float().numpy())
    diffusers = load_embedding(tmp_path / "d.safetensors")
    assert diffusers.format == "diffusers" and diffusers.num_vectors == {"<a>": 2, "<b>": 1}


def test_our_files_load_in_torch(tmp_path, torch, cat_toy):
    from safetensors.torch import load_file

    expected = torch.from_numpy(cat_toy.vectors["<cat-toy>"])
    a1111 = torch.load(save_embedding(cat_toy, tmp_path / "a.pt", "a1111"), weights_only=True)
    assert torch.equal(a1111["string_to_param"]["*"], expected)
    assert a1111["name"] == "<cat-toy>" and a1111["step"] == 3000
    diffusers = torch.load(save_embedding(cat_toy, tmp_path / "d.bin", "diffusers"), weights_only=True)
    assert torch.equal(diffusers["<cat-toy>"], expected)
    kohya = torch.load(save_embedding(cat_toy, tmp_path / "k.pt", "kohya"), weights_only=True)
    assert torch.equal(kohya["emb_params"], expected)
    native = load_file(save_embedding(cat_toy, tmp_path / "n.safetensors"))
    assert torch.equal(native["<cat-toy>"], expected)
    half = load_file(save_embedding(cat_toy, tmp_path / "h.safetensors", "kohya", "float16"))
    assert half["emb_params"].dtype == torch.float16
    assert torch.equal(half["emb_params"], expected.half())


# --- Errors ----------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="Received: path="):
        load_embedding(tmp_path / "nothing.pt")


def test_lora_safetensors_is_not_an_embedding(tmp_path):
    path = tmp_path / "lora.safetensors"
    path.write_bytes(safetensors.numpy.save({
        "lora_unet_down_blocks_0.lora_down.weight": np.zeros((4, 320), np.float32),
        "lora_unet_down_blocks_0.lora_up.weight": np.zeros((320, 4), np.float32),
        "lora_unet_down_blocks_0.alpha": np.zeros((), np.float32),
    }))
    with pytest.raises(EmbeddingFormatError, match=r"not a textual-inversion embedding.*lora_down"):
        load_embedding(path)


def test_same_width_weights_are_not_an_embedding(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(safetensors.numpy.save({
        "text_model.embeddings.token_embedding.weight": np.zeros((10, 8), np.float32),
        "text_model.final_layer_norm.bias": np.zeros(8, np.float32),
    }))
    with pytest.raises(EmbeddingFormatError, match="not a textual-inversion embedding"):
        load_embedding(path)


def test_integer_tensors_are_not_an_embedding(tmp_path):
    path = tmp_path / "ids.safetensors"
    path.write_bytes(safetensors.numpy.save({"ids": np.zeros((2, 8), np.int64)}))
    with pytest.raises(EmbeddingFormatError, match="not a textual-inversion embedding"):
        load_embedding(path)


def test_truncated_files_are_clear_errors(tmp_path, cat_toy):
    for format, name in [("native", "n.safetensors"), ("a1111", "a.pt")]:
        path = save_embedding(cat_toy, tmp_path / name, format)
        data = open(path, "rb").read()
        with open(path, "wb") as file:
            file.write(data[: len(data) - 100])
        with pytest.raises(EmbeddingFormatError, match="truncated"):
            load_embedding(path)


def test_random_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(EmbeddingFormatError, match="neither a safetensors file nor a PyTorch file"):
        load_embedding(path)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(EmbeddingFormatError, match="neither"):
        load_embedding(empty)


def test_unsafe_pickle_is_refused_through_load_embedding(tmp_path):
    import pickle
    import zipfile

    marker = tmp_path / "marker"

    class RunsPython:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "evil.safetensors"  # The name does not matter.
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"emb_params": RunsPython()}, protocol=2))
    with pytest.raises(UnsafePickleError, match="exec"):
        load_embedding(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "format, name, dtype, message",
    [
        ("onnx", "x.safetensors", None, "`format` must be one of"),
        ("native", "x.pt", None, r"must end with one of \('.safetensors',\)"),
        ("a1111", "x.safetensors", None, "AUTOMATIC1111 also reads kohya"),
        ("native", "x.safetensors", "float16", "Native embedding files are float32"),
        ("kohya", "x.safetensors", "bfloat16", "`dtype` must be one of"),
    ],
)
def test_save_errors(tmp_path, cat_toy, format, name, dtype, message):
    with pytest.raises(ValueError, match=message):
        save_embedding(cat_toy, tmp_path / name, format=format, dtype=dtype)
    assert not os.listdir(tmp_path)


def test_float16_overflow_is_an_error(tmp_path):
    embedding = TextualInversionEmbedding({"<big>": np.full((1, 8), 1e6, np.float32)})
    with pytest.raises(ValueError, match="beyond float16's range"):
        save_embedding(embedding, tmp_path / "x.safetensors", "kohya", "float16")


def test_a_failed_save_keeps_the_previous_file(tmp_path, monkeypatch, cat_toy, random_vectors):
    path = save_embedding(cat_toy, tmp_path / "cat.safetensors")
    before = open(path, "rb").read()
    other = TextualInversionEmbedding({"<other>": random_vectors((1, 768), 5)})

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_write.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_embedding(other, path)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["cat.safetensors"]
