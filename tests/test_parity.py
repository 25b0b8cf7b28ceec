"""Parity with transformers' native GPT2LMHeadModel / LlamaForCausalLM on the same random weights."""

import pytest
import torch

from conftest import GPT, LLAMA

CASES = [(GPT, shape) for shape in GPT.shapes] + [(LLAMA, shape) for shape in LLAMA.shapes]
IDS = [shape for _, shape in CASES]


def _inputs(batch=2, length=19, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, 320, (batch, length), generator=generator)


@pytest.mark.parametrize("family, shape", CASES, ids=IDS)
def test_logits_match_native_when_ours_is_copied_into_native(family, shape):
    ours = family.model(shape)
    native = family.to_native(ours)
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, native(x).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family, shape", CASES, ids=IDS)
def test_logits_match_native_when_native_is_copied_into_ours(family, shape):
    torch.manual_seed(3)
    native = family.to_native(family.model(shape, seed=7))
    with torch.no_grad():  # fresh random weights on the native side, so the copy direction really is native -> ours
        for p in native.parameters():
            p.normal_(0, 0.05)
    ours = family.from_native(native)
    x = _inputs(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, native(x).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family, shape", CASES, ids=IDS)
def test_greedy_generation_matches_native_token_for_token(family, shape):
    ours = family.model(shape)
    native = family.to_native(ours)
    prompt = _inputs(batch=1, length=5)
    kwargs = dict(max_new_tokens=24, do_sample=False, min_new_tokens=24)
    assert torch.equal(ours.generate(prompt, **kwargs), native.generate(prompt, **kwargs))


@pytest.mark.parametrize("family, shape", CASES, ids=IDS)
def test_conversion_round_trip_returns_the_original_tensors(family, shape):
    ours = family.model(shape)
    back = family.from_native(family.to_native(ours))
    original, returned = ours.state_dict(), back.state_dict()
    assert original.keys() == returned.keys()
    for key in original:
        assert torch.equal(original[key], returned[key]), key


def test_loss_matches_native_with_ignored_labels(family):
    ours = family.model()
    native = family.to_native(ours)
    x = _inputs()
    labels = x.clone()
    labels[0, :7] = -100
    with torch.no_grad():
        torch.testing.assert_close(ours(x, labels=labels).loss, native(x, labels=labels).loss, atol=1e-6, rtol=0)


def test_hidden_states_and_attentions_match_native_with_eager(family):
    ours = family.model(attn_implementation="eager")
    native = family.to_native(ours)
    native.set_attn_implementation("eager")
    x = _inputs()
    with torch.no_grad():
        a = ours(x, output_hidden_states=True, output_attentions=True)
        b = native(x, output_hidden_states=True, output_attentions=True)
    assert len(a.hidden_states) == ours.config.num_hidden_layers + 1 == len(b.hidden_states)
    assert len(a.attentions) == ours.config.num_hidden_layers == len(b.attentions)
    for mine, theirs in zip(a.hidden_states + a.attentions, b.hidden_states + b.attentions):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_sequence_classification_matches_native_with_padding(family):
    torch.manual_seed(0)
    ours = family.seq_cls(family.config(num_labels=3)).eval()
    native = family.native_seq_cls(ours)
    x = _inputs(batch=3, length=9)
    mask = torch.ones_like(x)
    x[0, 6:] = 0  # right padding with pad_token_id=0
    mask[0, 6:] = 0
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        a = ours(x, attention_mask=mask, labels=labels)
        b = native(x, attention_mask=mask, labels=labels)
    assert a.logits.shape == (3, 3)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-6, rtol=0)
