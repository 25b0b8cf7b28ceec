"""The LLaMA2 family's speedrun options (QK-norm, logit soft-capping, value embeddings, U-net skips): each is off by
default and then changes nothing, each does what it says (checked against the model without it on the same
weights), and a model using them generates with and without cache alike, saves, loads as remote code, and is
refused by the exports to native Llama and llama.cpp."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import TOKENS, make_byte_tokenizer, run_without_scratchformers
from scratchformers import Llama2Config, Llama2ForCausalLM, conversion
from test_save_load import REMOTE_SCRIPT

ALL_OPTIONS = dict(qk_norm=True, final_logit_softcapping=5.0, num_value_embeddings=1, unet_skips=True)
SHAPE = dict(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
             max_position_embeddings=64)
IDS = torch.tensor([[5, 17, 33, 9, 71, 12, 3, 250], [8, 8, 300, 41, 2, 99, 64, 7]])


def model_with(seed=0, **options):
    torch.manual_seed(seed)
    return Llama2ForCausalLM(Llama2Config(**SHAPE, **TOKENS, **options)).eval()


def logits(model, **kwargs):
    with torch.no_grad():
        return model(IDS, **kwargs).logits


def same_weights(source, target):
    """Copy every weight `source` has into `target` (which may have more)."""
    missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
    assert not unexpected
    return missing


def test_every_option_is_off_by_default_and_the_weights_are_native_llamas():
    config = Llama2Config(**SHAPE, **TOKENS)
    assert config.non_llama_options == {}
    model = Llama2ForCausalLM(config)
    native = conversion.llama2_to_llama(model)
    assert set(model.state_dict()) == set(native.state_dict())


@pytest.mark.parametrize("bad, message", [
    (dict(final_logit_softcapping=0.0), "final_logit_softcapping must be positive or None, got 0.0"),
    (dict(num_value_embeddings=3), r"num_value_embeddings must be in \[0, 2\].*got 3"),
    (dict(num_value_embeddings=-1), "got -1"),
])
def test_bad_option_values_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        Llama2Config(**SHAPE, **TOKENS, **bad)


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys():
    for qk_norm in (True, False):
        model = model_with(qk_norm=qk_norm)
        before = logits(model)
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight.mul_(10.0)
                layer.self_attn.k_proj.weight.mul_(4.0)
        change = (logits(model) - before).abs().max()
        assert change < 1e-3 if qk_norm else change > 0.05  # up to the norm's eps
    assert [n for n, _ in model_with(qk_norm=True).named_parameters() if "_norm" in n and "self_attn" in n][:2] == [
        "model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight"]


def test_soft_capping_is_cap_times_tanh_of_the_plain_logits_and_the_loss_uses_it():
    plain = model_with()
    capped = model_with(final_logit_softcapping=0.3)  # below the largest fresh logits (~0.5), so it bites
    assert same_weights(plain, capped) == []
    expected = 0.3 * torch.tanh(logits(plain) / 0.3)
    assert torch.allclose(logits(capped), expected, atol=1e-6)
    assert logits(capped).abs().max() < 0.3 < logits(plain).abs().max()
    with torch.no_grad():
        loss = capped(IDS, labels=IDS).loss
    reference = torch.nn.functional.cross_entropy(expected[:, :-1].flatten(0, 1), IDS[:, 1:].flatten())
    assert torch.allclose(loss, reference, atol=1e-6)


def test_value_embeddings_serve_the_first_and_last_layers_and_zero_tables_change_nothing():
    model = model_with(num_value_embeddings=2)
    layers = model.model.value_embeddings_per_layer(IDS)
    tables = [table(IDS) for table in model.model.value_embeds]
    assert [id(x) for x in layers[:2]] == [id(layers[3]), id(layers[2])]  # table i: layers i and L-1-i
    assert all(torch.equal(a, b) for a, b in zip(layers[:2], tables))
    one = model_with(num_value_embeddings=1).model.value_embeddings_per_layer(IDS)
    assert one[1] is None and one[2] is None and one[0] is one[3]

    plain = model_with()
    assert same_weights(plain, model) == ["model.value_embeds.0.weight", "model.value_embeds.1.weight"]
    with torch.no_grad():
        for table in model.model.value_embeds:
            table.weight.zero_()
    assert torch.allclose(logits(model), logits(plain), atol=1e-6)
    with torch.no_grad():
        model.model.value_embeds[1].weight[17].fill_(1.0)  # token 17's values in layers 1 and 2
    changed = (logits(model) - logits(plain)).abs().amax(-1)  # (B, T)
    assert changed[0, 1:].min() > 1e-4 and changed[0, 0] < 1e-6 and changed[1].max() < 1e-6  # causal, token-specific


def test_value_embeddings_need_token_ids():
    model = model_with(num_value_embeddings=1)
    with pytest.raises(ValueError, match="pass input_ids, not inputs_embeds"):
        model(inputs_embeds=model.get_input_embeddings()(IDS))


def test_unet_skips_add_the_first_half_outputs_to_the_second_half_inputs():
    model = model_with(unet_skips=True)
    assert model.model.skip_weights.tolist() == [1.0, 1.0]
    plain = model_with()
    assert same_weights(plain, model) == ["model.skip_weights"]
    assert not torch.allclose(logits(model), logits(plain), atol=1e-4)
    with torch.no_grad():
        model.model.skip_weights.zero_()
    assert torch.allclose(logits(model), logits(plain), atol=1e-6)

    outputs = []
    for layer in model.model.layers:
        layer.register_forward_hook(lambda module, args, out: outputs.append(out))
        layer.register_forward_pre_hook(lambda module, args: outputs.append(args[0]))
    with torch.no_grad():
        model.model.skip_weights.copy_(torch.tensor([0.5, 2.0]))
        model(IDS)
    inputs, outs = outputs[0::2], outputs[1::2]
    assert torch.allclose(inputs[2], outs[1] + 2.0 * outs[1], atol=1e-6)  # layer 1 -> layer 2, weight 2.0
    assert torch.allclose(inputs[3], outs[2] + 0.5 * outs[0], atol=1e-6)  # layer 0 -> layer 3, weight 0.5


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_all_options_generate_the_same_with_and_without_cache(kernel):
    model = model_with(**ALL_OPTIONS)
    model.set_attn_implementation(kernel)
    prompt = IDS[:, :3]
    cached = model.generate(prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    uncached = model.generate(prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_all_options_give_the_same_gradients_with_gradient_checkpointing():
    grads = []
    for checkpointing in (False, True):
        model = model_with(**ALL_OPTIONS).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        model(IDS, labels=IDS).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert set(grads[0]) == set(grads[1]) and all(g is not None for g in grads[0].values())
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


def test_all_options_save_and_load_in_process_and_as_remote_code(tmp_path):
    model = model_with(**ALL_OPTIONS)
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    assert {k: v for k, v in saved.items() if k in ALL_OPTIONS} == ALL_OPTIONS
    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert torch.equal(logits(loaded), logits(model))

    result_file = tmp_path / "result.pt"
    completed = run_without_scratchformers(tmp_path, REMOTE_SCRIPT, folder, result_file)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = torch.load(result_file)
    with torch.no_grad():
        assert torch.equal(result["logits"], model(torch.tensor([[5, 17, 33, 9, 71, 12, 3, 250]])).logits)
    expected = model.generate(torch.tensor([[5, 17, 33]]), max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert torch.equal(result["tokens"], expected)


@pytest.mark.parametrize("option", list(ALL_OPTIONS))
def test_conversion_to_native_llama_refuses_each_option_by_name(option):
    model = model_with(**{option: ALL_OPTIONS[option]})
    with pytest.raises(ValueError, match=f"LlamaForCausalLM has no {option}="):
        conversion.llama2_to_llama(model)


def test_gguf_export_refuses_a_model_llama_cpp_would_run_wrongly(tmp_path):
    pytest.importorskip("gguf")
    from scratchformers.gguf_export import export_gguf

    folder = tmp_path / "model"
    model_with(final_logit_softcapping=30.0).save_pretrained(folder)
    make_byte_tokenizer().save_pretrained(folder)
    out = tmp_path / "model.gguf"
    with pytest.raises(ValueError, match="does not run final_logit_softcapping"):
        export_gguf(folder, out)
    assert not out.exists()


def test_muon_trains_value_embeddings_and_skip_weights_with_adamw():
    from scratchformers.training.optim import muon_parameter_names

    names = muon_parameter_names(model_with(**ALL_OPTIONS))
    assert not any("value_embeds" in n or "skip_weights" in n or "_norm" in n for n in names)
    assert "model.layers.0.self_attn.q_proj.weight" in names


def test_the_options_reach_the_model_through_config_overrides(byte_tokenizer):
    from scratchformers.training.common import build_config

    overrides = "qk_norm=true,final_logit_softcapping=15,num_value_embeddings=2,unet_skips=true"
    config = build_config("llama2-tiny", byte_tokenizer, overrides)
    assert config.non_llama_options == dict(qk_norm=True, final_logit_softcapping=15, num_value_embeddings=2,
                                            unet_skips=True)
