"""The app's pickers offer the embeddings and LoRA files that load into the chosen model."""

import numpy as np
from safetensors.numpy import save_file

from studio.app.file_library import LibraryFile, files_for_model
from studio.app.model_catalog import ModelChoice, model_choices
from studio.embeddings import TextualInversionEmbedding, save_embedding


def model(family, width=768):
    return ModelChoice(name=family, description="", available=True, how_to_get="",
                       image_size=64, text_encoder_width=width, family=family)


SD1, SD2, SDXL = model("stable_diffusion", 768), model("stable_diffusion", 1024), model("sdxl")


def names(files):
    return [file.label for file in files]


def test_embeddings_are_offered_to_models_of_their_layout_and_width(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for name, width in (("sd1.safetensors", 768), ("sd2.safetensors", 1024)):
        embedding = TextualInversionEmbedding({f"<{name[:3]}>": rng.standard_normal((1, width))})
        files.append(LibraryFile(name, save_embedding(embedding, str(tmp_path / name))))
    pair = {"clip_l": rng.standard_normal((1, 768)).astype("float32"),
            "clip_g": rng.standard_normal((1, 1280)).astype("float32")}
    save_file(pair, str(tmp_path / "xl.safetensors"))
    save_file(pair, str(tmp_path / "sd3.safetensors"), metadata={"studio.base_family": "sd3"})
    files += [LibraryFile(name, str(tmp_path / name)) for name in ("xl.safetensors", "sd3.safetensors")]
    (tmp_path / "broken.pt").write_bytes(b"not an embedding")
    files.append(LibraryFile("broken.pt", str(tmp_path / "broken.pt")))

    assert names(files_for_model(files, SD1)) == ["sd1.safetensors", "broken.pt"]
    assert names(files_for_model(files, SD2)) == ["sd2.safetensors", "broken.pt"]
    # A {clip_l, clip_g} file from another tool may be SD-XL's or SD3's; the
    # studio's SD3 files say they are SD3's.
    assert names(files_for_model(files, SDXL)) == ["xl.safetensors", "broken.pt"]
    assert names(files_for_model(files, model("sd3"))) == [
        "xl.safetensors", "sd3.safetensors", "broken.pt"]
    assert files_for_model(files, None) == files


def test_loras_are_offered_by_their_base_model_or_layer_names(tmp_path):
    matrix = np.zeros((2, 4), "float32")
    layouts = {
        "kohya-sd1": ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": matrix}, {}),
        "kohya-sdxl": ({"lora_unet_input_blocks_4_1_proj_in.lora_down.weight": matrix}, {}),
        "te2-sdxl": ({"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": matrix}, {}),
        "kohya-sd3": ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": matrix}, {}),
        # Names both families have; the metadata tells.
        "meta-sdxl": ({"unet.down_blocks.1.attentions.0.proj_in.lora_A.weight": matrix},
                      {"ss_base_model_version": "sdxl_base_v1-0"}),
        "meta-sd2": ({"unet.down_blocks.1.attentions.0.proj_in.lora_A.weight": matrix},
                     {"ss_base_model_version": "sd_2.0"}),
        "untold": ({"unet.down_blocks.1.attentions.0.proj_in.lora_A.weight": matrix}, {}),
    }
    files = []
    for name, (tensors, metadata) in layouts.items():
        path = str(tmp_path / f"{name}.safetensors")
        save_file(tensors, path, metadata=metadata)
        files.append(LibraryFile(name, path))

    assert names(files_for_model(files, SD1, lora=True)) == ["kohya-sd1", "meta-sd2", "untold"]
    assert names(files_for_model(files, SDXL, lora=True)) == [
        "kohya-sdxl", "te2-sdxl", "meta-sdxl", "untold"]
    assert names(files_for_model(files, model("sd3"), lora=True)) == ["kohya-sd3", "untold"]


def test_model_choices_carry_their_family():
    families = {choice.name: choice.family for choice in model_choices()}
    assert families["tiny-shapes"] == "stable_diffusion"
    assert families["tiny-sdxl"] == families["tiny-shapes-xl"] == "sdxl"
