"""Configs: presets, GPT-2 aliases, validation errors, and parameter counts of the published models."""

import json

import pytest
import torch

import scratchformers as sf
from scratchformers import GPTConfig, Llama2Config


def test_gpt2_alias_names_read_and_write_the_hf_standard_fields():
    config = GPTConfig(n_embd=64, n_layer=2, n_head=4, n_positions=32, n_inner=100, activation_function="gelu_new")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (64, 2, 4)
    assert (config.max_position_embeddings, config.intermediate_size, config.hidden_act) == (32, 100, "gelu_new")
    config.n_embd = 128
    assert config.hidden_size == 128
    saved = json.loads(config.to_json_string())
    assert "hidden_size" in saved and "n_embd" not in saved


def test_gpt_intermediate_size_defaults_to_four_times_width():
    assert GPTConfig(hidden_size=96, num_attention_heads=4).intermediate_size == 384


@pytest.mark.parametrize(
    "name, expected",
    [
        ("gpt-micro", (4, 128, 4)),
        ("gpt-mini", (6, 384, 6)),
        ("gpt-small", (8, 512, 8)),
        ("gpt2", (12, 768, 12)),
        ("gpt2-xl", (48, 1600, 25)),
        ("llama2-7b", (32, 4096, 32)),
        ("llama2-13b", (40, 5120, 40)),
        ("llama2-70b", (80, 8192, 64)),
    ],
)
def test_presets_have_the_published_shapes(name, expected):
    config = sf.config_from_preset(name)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == expected


def test_llama2_presets_match_meta_release():
    for name, ffn, kv in (("llama2-7b", 11008, 32), ("llama2-13b", 13824, 40), ("llama2-70b", 28672, 8)):
        config = Llama2Config.from_preset(name)
        assert (config.intermediate_size, config.num_key_value_heads) == (ffn, kv)
        assert (config.vocab_size, config.max_position_embeddings, config.tie_word_embeddings) == (32000, 4096, False)
    gpt2 = GPTConfig.from_preset("gpt2")
    assert (gpt2.vocab_size, gpt2.max_position_embeddings, gpt2.tie_word_embeddings) == (50257, 1024, True)


def test_preset_overrides_win():
    config = Llama2Config.from_preset("llama2-tiny", vocab_size=500, num_hidden_layers=1)
    assert (config.vocab_size, config.num_hidden_layers, config.hidden_size) == (500, 1, 128)


@pytest.mark.parametrize("lookup", [GPTConfig.from_preset, Llama2Config.from_preset, sf.config_from_preset])
def test_unknown_preset_lists_the_known_ones(lookup):
    with pytest.raises(ValueError, match="gpt-nano") as error:
        lookup("gpt-nano")
    assert "known presets" in str(error.value)


@pytest.mark.parametrize(
    "config_class, kwargs, message",
    [
        (GPTConfig, dict(hidden_size=130, num_attention_heads=4), "hidden_size=130 is not divisible by num_attention_heads=4"),
        (Llama2Config, dict(hidden_size=130, num_attention_heads=4), "hidden_size=130 is not divisible"),
        (Llama2Config, dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=3),
         "num_attention_heads=4 is not divisible by num_key_value_heads=3"),
        (GPTConfig, dict(num_hidden_layers=0), "num_hidden_layers must be a positive integer, got 0"),
        (GPTConfig, dict(vocab_size=-5), "vocab_size must be a positive integer, got -5"),
        (Llama2Config, dict(intermediate_size=0), "intermediate_size must be a positive integer, got 0"),
        (Llama2Config, dict(num_key_value_heads=-1), "num_key_value_heads must be a positive integer, got -1"),
        (GPTConfig, dict(attention_dropout=1.0), r"attention_dropout must be in \[0, 1\), got 1.0"),
        (GPTConfig, dict(hidden_dropout=-0.1), r"hidden_dropout must be in \[0, 1\), got -0.1"),
        (Llama2Config, dict(attention_dropout=1.5), r"attention_dropout must be in \[0, 1\), got 1.5"),
        (Llama2Config, dict(hidden_size=96, num_attention_heads=32), "head_dim must be even and positive, got head_dim=3"),
        (Llama2Config, dict(head_dim=7), "head_dim=7"),
        (GPTConfig, dict(hidden_act="gelu_fancy"), "unknown hidden_act='gelu_fancy'"),
        (Llama2Config, dict(hidden_act="swiglu"), "unknown hidden_act='swiglu'"),
        (Llama2Config, dict(rope_theta=0.0), "rope_theta=0.0"),
    ],
)
def test_bad_config_raises_value_error_naming_the_value(config_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_class(**kwargs)


@pytest.mark.parametrize(
    "name, published",
    [
        ("gpt2", 124_439_808),
        ("gpt2-xl", 1_557_611_200),
        ("llama2-7b", 6_738_415_616),
        ("llama2-13b", 13_015_864_320),
        ("llama2-70b", 68_976_648_192),
    ],
)
def test_parameter_count_of_published_models_is_exact(name, published):
    assert sf.count_parameters(name) == published


def test_parameter_count_builds_on_the_meta_device(monkeypatch):
    built = []
    original = sf.Llama2ForCausalLM.__init__

    def spy(self, config):
        original(self, config)
        built.append({p.device.type for p in self.parameters()})

    monkeypatch.setattr(sf.Llama2ForCausalLM, "__init__", spy)
    assert sf.count_parameters("llama2-70b") == 68_976_648_192
    assert built == [{"meta"}]


def test_gpt_micro_has_about_a_million_non_embedding_parameters():
    assert 0.7e6 < sf.count_parameters("gpt-micro", exclude_embeddings=True) < 1.2e6


def test_config_json_round_trip_keeps_every_field(tmp_path):
    config = Llama2Config.from_preset("llama2-tiny", rope_theta=500000.0, pad_token_id=0)
    config.save_pretrained(tmp_path)
    loaded = Llama2Config.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert torch.tensor(loaded.rope_theta) == 500000.0
