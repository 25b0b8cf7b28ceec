"""generate() strategies, KV cache, left padding, streaming and pipeline, compared with transformers' own models."""

import pytest
import torch
from transformers import TextStreamer, pipeline

STRATEGIES = {
    "greedy": dict(do_sample=False),
    "sample": dict(do_sample=True),
    "top_k": dict(do_sample=True, top_k=5),
    "top_p": dict(do_sample=True, top_p=0.8, top_k=0),
    "temperature": dict(do_sample=True, temperature=0.6, top_k=0),
    "beam_search": dict(do_sample=False, num_beams=3),
    "repetition_penalty": dict(do_sample=False, repetition_penalty=1.8),
    "no_repeat_ngram_size": dict(do_sample=False, no_repeat_ngram_size=2),
}


def _generate(model, prompt, seed=0, **kwargs):
    torch.manual_seed(seed)
    return model.generate(prompt, max_new_tokens=16, min_new_tokens=16, pad_token_id=0, **kwargs)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_generation_strategy_gives_the_same_tokens_as_native(family, strategy):
    ours = family.model()
    native = family.to_native(ours)
    prompt = torch.tensor([[5, 17, 33, 9]])
    mine = _generate(ours, prompt, **STRATEGIES[strategy])
    theirs = _generate(native, prompt, **STRATEGIES[strategy])
    assert torch.equal(mine, theirs)


def test_sampling_with_a_fixed_seed_is_reproducible_and_seed_dependent(family):
    ours = family.model()
    prompt = torch.tensor([[5, 17, 33, 9]])
    first = _generate(ours, prompt, seed=123, do_sample=True, top_k=0)
    again = _generate(ours, prompt, seed=123, do_sample=True, top_k=0)
    other = _generate(ours, prompt, seed=124, do_sample=True, top_k=0)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_no_repeat_ngram_size_leaves_no_repeated_bigram(family):
    out = _generate(family.model(), torch.tensor([[5, 17, 33, 9]]), do_sample=False, no_repeat_ngram_size=2)[0]
    bigrams = list(zip(out[:-1].tolist(), out[1:].tolist()))
    assert len(bigrams) == len(set(bigrams))


@pytest.mark.parametrize("strategy", ["greedy", "beam_search", "top_k"])
def test_kv_cached_generation_equals_uncached(family, strategy):
    ours = family.model()
    prompt = torch.tensor([[5, 17, 33, 9], [8, 8, 40, 2]])
    cached = _generate(ours, prompt, use_cache=True, **STRATEGIES[strategy])
    uncached = _generate(ours, prompt, use_cache=False, **STRATEGIES[strategy])
    assert torch.equal(cached, uncached)


def test_cached_forward_step_by_step_matches_full_forward(family):
    ours = family.model()
    x = torch.randint(3, 320, (2, 12))
    with torch.no_grad():
        full = ours(x).logits
        out = ours(x[:, :7], use_cache=True)
        steps = [out.logits]
        for t in range(7, 12):
            out = ours(x[:, t : t + 1], cache=out.cache, use_cache=True)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_deprecated_past_key_values_name_still_feeds_the_cache(family):
    ours = family.model()
    x = torch.randint(3, 320, (1, 6))
    with torch.no_grad():
        full = ours(x).logits[:, -1]
        first = ours(x[:, :5], use_cache=True)
        step = ours(x[:, 5:], past_key_values=first.cache, use_cache=True).logits[:, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=0)


def test_left_padded_batch_generates_what_each_prompt_generates_alone(family):
    ours = family.model()
    prompts = [[5, 17, 33, 9, 71, 12], [44, 3], [90, 91, 92]]
    width = max(map(len, prompts))
    batch = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    together = ours.generate(batch, attention_mask=mask, max_new_tokens=10, min_new_tokens=10, do_sample=False,
                             pad_token_id=0)
    for row, prompt in enumerate(prompts):
        alone = ours.generate(torch.tensor([prompt]), max_new_tokens=10, min_new_tokens=10, do_sample=False,
                              pad_token_id=0)
        assert together[row, width:].tolist() == alone[0, len(prompt):].tolist()


def test_text_streamer_receives_the_generated_text(family, byte_tokenizer, capsys):
    ours = family.model()
    prompt = byte_tokenizer("Hi", return_tensors="pt")
    out = ours.generate(**prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                        streamer=TextStreamer(byte_tokenizer, skip_prompt=True))
    printed = capsys.readouterr().out
    new_tokens = out[0, prompt["input_ids"].shape[1]:]
    assert len(new_tokens) == 8  # the streamer saw exactly the 8 generated tokens, not the prompt
    expected = byte_tokenizer.decode(new_tokens)
    assert printed.rstrip("\n") == expected.rstrip("\n")


def test_text_generation_pipeline_continues_the_prompt(family, byte_tokenizer):
    ours = family.model()
    generator = pipeline("text-generation", model=ours, tokenizer=byte_tokenizer)
    result = generator("Hello", max_new_tokens=6, do_sample=False)
    text = result[0]["generated_text"]
    assert text.startswith("Hello") and len(text) > len("Hello")
