"""An SD3 LoRA from the studio, applied in diffusers and named as ComfyUI reads it.

tiny-sd3's keras-hub MMDiT is exported to diffusers' `SD3Transformer2DModel`
(same outputs), then a LoRA set on the studio's MMDiT is written in kohya's
and diffusers' names; diffusers (peft) loads the second and must change its
output as the LoRA changes the studio's. The names are checked against
ComfyUI's SD3 key map (`comfy/lora.py` `model_lora_keys_unet`: `lora_unet_`
+ each `diffusion_model.*` weight of SD3's original layout, and
`transformer.` + each diffusers name that `comfy/utils.py`
`mmdit_to_diffusers` maps), rebuilt here from diffusers' real module names.
"""

import numpy as np
import pytest
from keras import ops

from studio.interop.sd3_diffusers_transformer import (
    diffusers_transformer_config,
    diffusers_transformer_state_dict,
)
from studio.lora.lora_weights import LoRAWeights
from studio.lora.sd3_diffusers_lora import diffusers_sd3_lora_tensors, save_diffusers_sd3_lora
from studio.models.sd3 import SD3Backbone
from studio.trainers.dreambooth.sd3_lora_trainer import SD3LoRATrainer

# ComfyUI's MMDIT_MAP_BLOCK (comfy/utils.py), weights only: SD3 module -> diffusers module.
COMFYUI_MMDIT_MAP_BLOCK = {
    "context_block.adaLN_modulation.1": "norm1_context.linear",
    "context_block.attn.proj": "attn.to_add_out",
    "context_block.mlp.fc1": "ff_context.net.0.proj",
    "context_block.mlp.fc2": "ff_context.net.2",
    "x_block.adaLN_modulation.1": "norm1.linear",
    "x_block.attn.proj": "attn.to_out.0",
    "x_block.mlp.fc1": "ff.net.0.proj",
    "x_block.mlp.fc2": "ff.net.2",
}
# ... and its fused-qkv split (`key_map["{}to_q.{}"] = (qkv, (0, 0, offset))` ...).
COMFYUI_QKV = {
    "x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
PROMPTS = ["a photo of sks dog", ""]


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


@pytest.fixture(scope="module")
def backbone():
    return SD3Backbone.from_preset("tiny-sd3")


@pytest.fixture(scope="module")
def base_transformer(backbone):
    """diffusers' transformer with tiny-sd3's weights, exported before any LoRA."""
    import torch
    from diffusers import SD3Transformer2DModel
    model = SD3Transformer2DModel(**diffusers_transformer_config(backbone.mmdit))
    state = {name: torch.from_numpy(value) for name, value in
             diffusers_transformer_state_dict(backbone.mmdit).items()}  # fmt: skip
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def inputs(backbone):
    rng = np.random.default_rng(0)
    conditioning = {
        key: numpy(value)
        for key, value in backbone.encode_text(backbone.tokenizer(PROMPTS)).items()
    }
    latents = rng.standard_normal((2, 8, 8, 16)).astype("float32")
    return latents, np.float32([750.0, 40.0]), conditioning


def _studio(backbone, inputs):
    latents, timesteps, conditioning = inputs
    return numpy(backbone.denoise(latents, timesteps, conditioning))


def _diffusers(model, inputs):
    import torch
    latents, timesteps, conditioning = inputs
    with torch.no_grad():
        output = model(
            hidden_states=torch.from_numpy(latents.transpose(0, 3, 1, 2).copy()),
            encoder_hidden_states=torch.from_numpy(conditioning["context"]),
            pooled_projections=torch.from_numpy(conditioning["pooled_projection"]),
            timestep=torch.from_numpy(timesteps),
        ).sample
    return output.numpy().transpose(0, 2, 3, 1)


def test_exported_transformer_gives_the_mmdits_velocity(backbone, base_transformer, inputs):
    studio, theirs = _studio(backbone, inputs), _diffusers(base_transformer, inputs)
    assert np.abs(studio).max() > 0.1
    np.testing.assert_allclose(theirs, studio, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def lora_backbone(tmp_path_factory):
    """tiny-sd3 with LoRA on attention and MLPs (alpha 8, rank 4: scale 2), made non-zero."""
    backbone = SD3Backbone.from_preset("tiny-sd3")
    trainer = SD3LoRATrainer(backbone, lora_rank=4, lora_alpha=8, lora_mlp=True, seed=3)
    rng = np.random.default_rng(5)
    for layer in trainer.lora_targets.values():
        # Stands for trained matrices: B starts at zero, so give it values.
        layer.lora_kernel_b.assign(0.1 * rng.standard_normal(layer.lora_kernel_b.shape))
    return backbone


def test_diffusers_lora_changes_diffusers_output_as_the_studios(
        lora_backbone, base_transformer, inputs, tmp_path):  # fmt: skip
    import torch
    from diffusers import SD3Transformer2DModel
    import safetensors.torch

    base = _diffusers(base_transformer, inputs)
    with_lora = _studio(lora_backbone, inputs)
    assert np.abs(with_lora - base).max() > 0.05  # the LoRA does something

    path = save_diffusers_sd3_lora(LoRAWeights.from_backbone(lora_backbone), tmp_path / "d.safetensors")
    model = SD3Transformer2DModel.from_config(base_transformer.config)
    model.load_state_dict(base_transformer.state_dict())
    model.load_lora_adapter(safetensors.torch.load_file(path), prefix="transformer")
    adapted = _diffusers(model.eval(), inputs)
    np.testing.assert_allclose(adapted - base, with_lora - base, atol=1e-4, rtol=0)


def test_kohya_file_reloads_into_a_fresh_backbone(lora_backbone, inputs, tmp_path):
    path = LoRAWeights.from_backbone(lora_backbone).save(tmp_path / "k.safetensors")
    fresh = SD3Backbone.from_preset("tiny-sd3")
    applied = LoRAWeights.load(path).apply(fresh)
    assert len(applied) == 13
    np.testing.assert_allclose(_studio(fresh, inputs), _studio(lora_backbone, inputs), atol=1e-6)
    # Other tools' SD3 LoRAs also adapt the modulations (kohya names of any dense layer).
    layer = fresh.mmdit.joint_blocks[0].x_block.ada_layer_norm.dense
    rng = np.random.default_rng(9)
    extra = LoRAWeights({"lora_unet_joint_blocks_0_x_block_adaLN_modulation_1": (
        rng.standard_normal((2, layer.kernel.shape[0])), rng.standard_normal((layer.kernel.shape[1], 2)), 2.0,
    )})  # fmt: skip
    before = _studio(fresh, inputs)
    assert extra.apply(fresh) == ["lora_unet_joint_blocks_0_x_block_adaLN_modulation_1"]
    assert np.abs(_studio(fresh, inputs) - before).max() > 1e-3


def test_diffusers_file_loads_back_as_fused_qkv_lora(lora_backbone, inputs, tmp_path):
    path = save_diffusers_sd3_lora(LoRAWeights.from_backbone(lora_backbone), tmp_path / "d.safetensors")
    loaded = LoRAWeights.load(path)
    # q, k, v's rank-4 LoRAs share one layer: rank 12 there, 4 elsewhere.
    assert loaded.modules["lora_unet_joint_blocks_0_x_block_attn_qkv"][0].shape[0] == 12
    assert loaded.ranks == [4, 12]
    fresh = SD3Backbone.from_preset("tiny-sd3")
    assert len(loaded.apply(fresh)) == 13
    np.testing.assert_allclose(_studio(fresh, inputs), _studio(lora_backbone, inputs), atol=1e-5)


def test_file_names_are_keys_of_comfyuis_sd3_map(lora_backbone, base_transformer):
    # ComfyUI's map, from diffusers' real weight names of this transformer.
    diffusers_weights = [k[: -len(".weight")] for k in base_transformer.state_dict()
                         if k.endswith(".weight")]  # fmt: skip
    to_sd3 = {}
    for name in diffusers_weights:
        if not name.startswith("transformer_blocks."):
            continue
        _, index, rest = name.split(".", 2)
        for sd3, diffusers in COMFYUI_MMDIT_MAP_BLOCK.items():
            if rest == diffusers:
                to_sd3[name] = f"joint_blocks.{index}.{sd3}"
        for sd3, split in COMFYUI_QKV.items():
            if rest in split:
                to_sd3[name] = f"joint_blocks.{index}.{sd3}"
    comfy_kohya = {"lora_unet_" + sd3.replace(".", "_") for sd3 in to_sd3.values()}
    comfy_diffusers = {f"transformer.{name}" for name in to_sd3}

    weights = LoRAWeights.from_backbone(lora_backbone)
    assert set(weights.modules) <= comfy_kohya
    assert "lora_unet_joint_blocks_0_x_block_attn_qkv" in weights.modules
    assert "lora_unet_joint_blocks_1_context_block_attn_qkv" in weights.modules
    # The last context block has no proj / MLP, in ComfyUI's map as here.
    assert "lora_unet_joint_blocks_1_context_block_attn_proj" not in comfy_kohya

    tensors = diffusers_sd3_lora_tensors(weights)
    modules = {key.rsplit(".lora_", 1)[0] for key in tensors}
    assert modules <= comfy_diffusers
    # 13 kohya modules; each of the 4 fused qkv is 3 diffusers modules.
    assert len(weights.modules) == 13 and len(modules) == 13 + 4 * 2
    assert {"transformer.transformer_blocks.0.attn.to_q",
            "transformer.transformer_blocks.1.attn.add_v_proj"} <= modules  # fmt: skip


# A compiled train step of keras-hub's MMDiT: about 40 s on 2 shared cores.
@pytest.mark.large
def test_a_trained_lora_changes_diffusers_output_as_the_studios(base_transformer, inputs, tmp_path):
    import torch
    from diffusers import SD3Transformer2DModel
    import keras
    import safetensors.torch

    backbone = SD3Backbone.from_preset("tiny-sd3")
    trainer = SD3LoRATrainer(backbone, lora_rank=4, lora_alpha=2, lora_mlp=True, seed=1)
    trainer.compile(optimizer=keras.optimizers.Adam(2e-2), jit_compile=False)
    latents, _, conditioning = inputs
    batch = {"latents": latents, **conditioning}
    for _ in range(4):
        trainer.train_on_batch(batch)
    base = _diffusers(base_transformer, inputs)
    studio = _studio(backbone, inputs)
    assert np.abs(studio - base).max() > 1e-3  # the training moved the output

    path = trainer.save_results(str(tmp_path), step=4)[1]
    model = SD3Transformer2DModel.from_config(base_transformer.config)
    model.load_state_dict(base_transformer.state_dict())
    model.load_lora_adapter(safetensors.torch.load_file(path), prefix="transformer")
    adapted = _diffusers(model.eval(), inputs)
    print("trained LoRA: change", np.abs(studio - base).max(),
          "diffusers vs studio", np.abs((adapted - base) - (studio - base)).max())  # fmt: skip
    np.testing.assert_allclose(adapted - base, studio - base, atol=1e-4, rtol=0)


def test_diffusers_files_the_mmdit_cannot_take_are_one_clear_error():
    from studio.errors import InvalidInputError
    from studio.lora.sd3_diffusers_lora import sd3_lora_from_diffusers_tensors

    def pair(module, rank=2, width=32):
        key = f"transformer.transformer_blocks.0.{module}"
        return {f"{key}.lora_A.weight": np.ones((rank, width)),
                f"{key}.lora_B.weight": np.ones((width, rank))}  # fmt: skip

    partial = {**pair("attn.to_q"), **pair("attn.to_k")}
    with pytest.raises(InvalidInputError, match="not for all of"):
        sd3_lora_from_diffusers_tensors(partial)
    with pytest.raises(InvalidInputError, match="attn.to_x"):
        sd3_lora_from_diffusers_tensors(pair("attn.to_x"))
    # A CLIP module the studio does not adapt (the embeddings): one line, not a traceback.
    clip = {"text_encoder.text_model.embeddings.token_embedding.lora_A.weight": np.ones((2, 32))}
    with pytest.raises(InvalidInputError, match="no CLIP-L/G layer .*token_embedding"):
        sd3_lora_from_diffusers_tensors({**pair("attn.to_out.0"), **clip})
    fused = sd3_lora_from_diffusers_tensors(
        {**pair("attn.to_q"), **pair("attn.to_k", rank=3), **pair("attn.to_v")}
    )
    down, up, alpha = fused["lora_unet_joint_blocks_0_x_block_attn_qkv"]
    assert down.shape == (7, 32) and up.shape == (96, 7) and alpha == 7.0
    # Block-diagonal: q's rows read only q's rank.
    assert np.all(up[:32, 2:] == 0) and np.all(up[32:64, 2:5] == 1)
