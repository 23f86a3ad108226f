"""LoRA on SD3's CLIP-L / CLIP-G: applied in transformers by diffusers' own loader, named as ComfyUI reads it.

tiny-sd3's keras-hub `CLIPTextEncoder`s are exported to transformers'
`CLIPTextModel` (same hidden states), then a LoRA set on the studio's
encoders is written in diffusers' SD3 names; diffusers'
`StableDiffusion3Pipeline.lora_state_dict` / `load_lora_into_text_encoder`
(what its `load_lora_weights` runs for `text_encoder` and
`text_encoder_2`) load it with peft, and the encoder's states must change
as the studio's do. The kohya names are checked against ComfyUI's CLIP key
map (`comfy/lora.py` `model_lora_keys_clip`: `lora_te1_` for `clip_l`,
`lora_te2_` for `clip_g`, plus `LORA_CLIP_MAP`'s module names), rebuilt
here from transformers' real module names.
"""

import copy

import numpy as np
import pytest
from keras import ops

from studio.lora.lora_weights import LoRAWeights
from studio.lora.sd3_diffusers_lora import diffusers_sd3_lora_tensors, save_diffusers_sd3_lora
from studio.models.sd3 import SD3Backbone
from studio.trainers.dreambooth.sd3_lora_trainer import SD3LoRATrainer

# ComfyUI's LORA_CLIP_MAP (comfy/lora.py): transformers module -> kohya suffix.
COMFYUI_LORA_CLIP_MAP = {
    "mlp.fc1": "mlp_fc1",
    "mlp.fc2": "mlp_fc2",
    "self_attn.k_proj": "self_attn_k_proj",
    "self_attn.q_proj": "self_attn_q_proj",
    "self_attn.v_proj": "self_attn_v_proj",
    "self_attn.out_proj": "self_attn_out_proj",
}
# diffusers' SD3 components and kohya's prefixes of the two encoders.
ENCODERS = {"clip_l": ("text_encoder", "lora_te1"), "clip_g": ("text_encoder_2", "lora_te2")}
PROMPTS = ["a photo of sks dog", ""]


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def transformers_clip(encoder):
    """transformers' `CLIPTextModel` holding a keras-hub `CLIPTextEncoder`'s weights."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    heads, hidden = encoder.num_heads, encoder.hidden_dim
    config = CLIPTextConfig(
        vocab_size=encoder.vocabulary_size, hidden_size=hidden,
        intermediate_size=encoder.intermediate_dim, num_hidden_layers=encoder.num_layers,
        num_attention_heads=heads, max_position_embeddings=encoder.max_sequence_length,
        hidden_act=encoder.intermediate_activation, layer_norm_eps=1e-5,
        # Inside the tiny vocabulary (only the pooled output, not compared, reads them).
        bos_token_id=encoder.vocabulary_size - 2, eos_token_id=encoder.vocabulary_size - 1,
    )  # fmt: skip
    model = CLIPTextModel(config)

    def w(variable):
        return numpy(variable)

    state = {
        "text_model.embeddings.token_embedding.weight": w(encoder.embedding.token_embedding.embeddings),
        "text_model.embeddings.position_embedding.weight": w(
            encoder.embedding.position_embedding.position_embeddings
        ),
        "text_model.final_layer_norm.weight": w(encoder.layer_norm.gamma),
        "text_model.final_layer_norm.bias": w(encoder.layer_norm.beta),
    }
    for index, block in enumerate(encoder.encoder_layers):
        prefix = f"text_model.encoder.layers.{index}."
        attention = block.attention
        for name, dense in (("q_proj", attention._query_dense), ("k_proj", attention._key_dense),
                            ("v_proj", attention._value_dense)):  # fmt: skip
            state[f"{prefix}self_attn.{name}.weight"] = w(dense._kernel).reshape(hidden, hidden).T
            state[f"{prefix}self_attn.{name}.bias"] = w(dense.bias).reshape(hidden)
        output = attention._output_dense
        state[f"{prefix}self_attn.out_proj.weight"] = w(output._kernel).reshape(hidden, hidden).T
        state[f"{prefix}self_attn.out_proj.bias"] = w(output.bias)
        for ours, theirs in (("layer_norm_1", "layer_norm1"), ("layer_norm_2", "layer_norm2")):
            state[f"{prefix}{theirs}.weight"] = w(getattr(block, ours).gamma)
            state[f"{prefix}{theirs}.bias"] = w(getattr(block, ours).beta)
        for ours, theirs in (("dense_1", "mlp.fc1"), ("dense_2", "mlp.fc2")):
            state[f"{prefix}{theirs}.weight"] = w(getattr(block, ours)._kernel).T
            state[f"{prefix}{theirs}.bias"] = w(getattr(block, ours).bias)
    # transformers 5 drops the `text_model.` level its files and LoRA files name.
    own = set(model.state_dict())
    state = {(name if name in own else name.removeprefix("text_model.")):
             torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}  # fmt: skip
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Only buffers (position ids) are left to transformers.
    assert not unexpected and all("position_ids" in name for name in missing)
    return model.eval()


def transformers_states(model, encoder, token_ids):
    """transformers' final states and the state keras-hub reads as `intermediate_output`."""
    import torch

    with torch.no_grad():
        output = model(torch.from_numpy(np.asarray(token_ids, np.int64)), output_hidden_states=True)
    index = encoder.intermediate_output_index % encoder.num_layers
    # hidden_states[0] is the embeddings: layer i's output is hidden_states[i + 1].
    return output.last_hidden_state.numpy(), output.hidden_states[index + 1].numpy()


def studio_states(encoder, token_ids):
    outputs = encoder({"token_ids": ops.convert_to_tensor(np.asarray(token_ids, np.int32))})
    return numpy(outputs["sequence_output"]), numpy(outputs["intermediate_output"])


@pytest.fixture(scope="module")
def exported():
    """tiny-sd3 and transformers' copies of its encoders, taken before any LoRA."""
    backbone = SD3Backbone.from_preset("tiny-sd3")
    models = {name: transformers_clip(getattr(backbone, name)) for name in ENCODERS}
    return backbone, models, np.asarray(backbone.tokenizer(PROMPTS))


@pytest.fixture(scope="module")
def lora_backbone(exported):
    """The same backbone with LoRA (rank 4, alpha 8) on CLIP-L/G's attention and MLPs, made non-zero."""
    backbone = exported[0]
    SD3LoRATrainer(backbone, lora_rank=4, lora_alpha=8, lora_mlp=True, train_text_encoder=True,
                   seed=3)  # fmt: skip
    rng = np.random.default_rng(5)
    for name in ENCODERS:
        for variable in getattr(backbone, name).trainable_variables:
            # Stands for trained matrices: B starts at zero, so give it values.
            if variable.path.endswith("lora_kernel_b"):
                variable.assign(0.2 * rng.standard_normal(variable.shape))
    return backbone


def test_exported_encoders_give_keras_hubs_states(exported):
    backbone, models, token_ids = exported
    for name, model in models.items():
        encoder = getattr(backbone, name)
        for theirs, studio in zip(transformers_states(model, encoder, token_ids),
                                  studio_states(encoder, token_ids)):  # fmt: skip
            assert np.abs(studio).max() > 0.1
            np.testing.assert_allclose(theirs, studio, atol=1e-5, rtol=1e-4)


def test_diffusers_loads_the_clip_lora_and_changes_the_states_as_the_studios(
        exported, lora_backbone, tmp_path):  # fmt: skip
    import safetensors.torch
    from diffusers import StableDiffusion3Pipeline

    _, models, token_ids = exported
    path = save_diffusers_sd3_lora(LoRAWeights.from_backbone(lora_backbone), tmp_path / "d.safetensors")
    state_dict = StableDiffusion3Pipeline.lora_state_dict(safetensors.torch.load_file(path))
    for name, (component, _) in ENCODERS.items():
        # A copy: peft changes the model it loads into.
        model, encoder = copy.deepcopy(models[name]), getattr(lora_backbone, name)
        base = transformers_states(model, encoder, token_ids)
        StableDiffusion3Pipeline.load_lora_into_text_encoder(
            state_dict, network_alphas=None, text_encoder=model, prefix=component
        )
        adapted = transformers_states(model, encoder, token_ids)
        studio = studio_states(encoder, token_ids)
        for before, theirs, ours in zip(base, adapted, studio):
            assert np.abs(ours - before).max() > 0.05  # the LoRA does something
            np.testing.assert_allclose(theirs - before, ours - before, atol=1e-4, rtol=0)


def test_kohya_and_diffusers_files_reload_into_a_fresh_backbone(lora_backbone, exported, tmp_path):
    token_ids = exported[2]
    weights = LoRAWeights.from_backbone(lora_backbone)
    kohya = weights.save(tmp_path / "k.safetensors")
    diffusers = save_diffusers_sd3_lora(weights, tmp_path / "d.safetensors")
    expected = {name: studio_states(getattr(lora_backbone, name), token_ids) for name in ENCODERS}
    for path in (kohya, diffusers):
        fresh = SD3Backbone.from_preset("tiny-sd3")
        applied = LoRAWeights.load(path).apply(fresh)
        # 13 MMDiT modules, 6 a layer in each encoder's 2 layers.
        assert len(applied) == 13 + 2 * 2 * 6
        for name in ENCODERS:
            for got, want in zip(studio_states(getattr(fresh, name), token_ids), expected[name]):
                np.testing.assert_allclose(got, want, atol=1e-5)


def test_file_names_are_keys_of_comfyuis_and_diffusers_clip_maps(lora_backbone, exported):
    models = exported[1]
    weights = LoRAWeights.from_backbone(lora_backbone)
    tensors = diffusers_sd3_lora_tensors(weights)
    diffusers_modules = {key.rsplit(".lora_", 1)[0] for key in tensors}
    for name, (component, prefix) in ENCODERS.items():
        # Module names as files (and transformers 4) write them: under `text_model.`.
        layers = ["text_model." + key.removeprefix("text_model.")[: -len(".weight")]
                  for key in models[name].state_dict() if key.endswith(".weight")]  # fmt: skip
        comfy = {f"{prefix}_text_model_encoder_layers_{layer.split('.')[3]}_{suffix}"
                 for layer in layers for module, suffix in COMFYUI_LORA_CLIP_MAP.items()
                 if layer.startswith("text_model.encoder.layers.") and layer.endswith(module)}  # fmt: skip
        ours = {module for module in weights.modules if module.startswith(prefix + "_")}
        assert ours == comfy and len(ours) == 12
        theirs = {f"{component}.{layer}" for layer in layers}
        written = {module for module in diffusers_modules if module.startswith(component + ".")}
        assert written <= theirs and len(written) == 12
