"""The family registry: a new family is its own classes plus one `register_family` call, and then LoRA defaults,
PEFT, conversion to and from its native counterpart, the Hub push and the model card all work for it."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import GPT2Config, GPT2LMHeadModel

import scratchformers as sf
from scratchformers import conversion, lora
from scratchformers.families import FAMILIES, ModelFamily, family_of, register_family
from scratchformers.peft_utils import get_peft_lora_model

from conftest import make_byte_tokenizer


class ToyConfig(sf.GPTConfig):
    model_type = "scratch_toy"


class ToyForCausalLM(sf.GPTForCausalLM):
    config_class = ToyConfig


def toy_from_gpt2(native):
    gpt = conversion.gpt_from_gpt2(native)
    toy = ToyForCausalLM(ToyConfig(**{k: v for k, v in gpt.config.to_diff_dict().items()
                                      if k not in ("model_type", "architectures", "transformers_version")}))
    toy.load_state_dict(gpt.state_dict())
    return toy.eval()


TOY = ModelFamily(
    name="toy", config_class=ToyConfig, heads={"AutoModelForCausalLM": ToyForCausalLM}, native_model_type="gpt2",
    native_model=GPT2LMHeadModel, native_config_class=GPT2Config, to_native=conversion.gpt_to_gpt2,
    from_native=toy_from_gpt2,
    native_keys=conversion.gpt2_native_keys, lora_target_modules=("c_attn",),
    card={"en": "Toy family (a GPT with another name)", "zh": "玩具模型族"},
)


@pytest.fixture
def toy_registry(monkeypatch):
    """The registry with the toy family in place of GPT (which converts from the same native GPT-2)."""
    gpt = FAMILIES.pop("scratch_gpt")
    register_family(TOY)
    yield TOY
    FAMILIES.pop("scratch_toy")
    FAMILIES["scratch_gpt"] = gpt


def toy_folder(folder, seed=0):
    torch.manual_seed(seed)
    model = ToyForCausalLM(ToyConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, vocab_size=300,
                                     max_position_embeddings=32, bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()
    model.save_pretrained(folder)
    make_byte_tokenizer().save_pretrained(folder)
    return model


def test_the_builtin_families_are_registered_with_everything_the_tools_read():
    assert {f.name for f in FAMILIES.values()} == {"gpt", "llama2", "bert"}
    for family in FAMILIES.values():
        assert family_of(family.model_type) is family and family_of(family.config_class()) is family
        assert family.pretraining_model.config_class is family.config_class and family.lora_target_modules
        assert family.card["en"] and family.card["zh"]
    assert [f.name for f in FAMILIES.values() if not f.is_decoder] == ["bert"]
    with pytest.raises(ValueError, match="'bert' is not a scratchformers family"):
        family_of("bert")  # the native model type, which the BERT family converts from


def test_a_family_needs_its_pretraining_head():
    with pytest.raises(ValueError, match="heads must include its pretraining head AutoModelForMaskedLM"):
        register_family(ModelFamily(
            name="broken", config_class=ToyConfig, heads={"AutoModel": ToyForCausalLM}, native_model_type="gpt2",
            native_model=GPT2LMHeadModel, native_config_class=GPT2Config, to_native=conversion.gpt_to_gpt2,
            from_native=toy_from_gpt2, pretraining_head="AutoModelForMaskedLM"))


def test_a_registered_family_gets_lora_defaults_conversion_and_a_hub_card(toy_registry, tmp_path):
    from hub_scripts import convert_folder, stage_model_folder

    model = toy_folder(tmp_path / "toy")
    assert lora.DEFAULT_TARGET_MODULES["scratch_toy"] == ["c_attn"]
    peft_model = get_peft_lora_model(model)
    assert set(peft_model.peft_config["default"].target_modules) == {"c_attn"}

    assert convert_folder(tmp_path / "toy", tmp_path / "native") == ("scratch_toy", "gpt2")
    assert json.loads((tmp_path / "native" / "config.json").read_text())["model_type"] == "gpt2"
    assert convert_folder(tmp_path / "native", tmp_path / "back") == ("gpt2", "scratch_toy")
    back = ToyForCausalLM.from_pretrained(tmp_path / "back").eval()
    x = torch.randint(3, 300, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, model(x).logits, atol=1e-5, rtol=1e-5)

    stage_model_folder(tmp_path / "toy", tmp_path / "staged", repo_id="alice/toy")
    card = ModelCard.load(tmp_path / "staged" / "README.md")
    assert "Toy family (a GPT with another name)" in card.text and "玩具模型族" in card.text
    assert "scratch_toy" in card.data.tags
