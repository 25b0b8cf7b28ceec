"""Attention kernels, masks, gradient checkpointing, errors and the rest of the forward contract."""

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPast


def _padded_batch():
    x = torch.randint(3, 320, (3, 11), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(x)
    mask[1, :4] = 0  # left padding
    mask[2, 8:] = 0  # right padding
    return x, mask


def test_sdpa_equals_eager_with_and_without_padding(family):
    sdpa = family.model(attn_implementation="sdpa")
    eager = family.model(attn_implementation="eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    x, mask = _padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x).logits, eager(x).logits, atol=1e-5, rtol=0)
        a = sdpa(x, attention_mask=mask).logits
        b = eager(x, attention_mask=mask).logits
    keep = mask.bool()
    torch.testing.assert_close(a[keep], b[keep], atol=1e-5, rtol=0)


def test_set_attn_implementation_switches_kernel_without_changing_outputs(family):
    model = family.model()
    x = torch.randint(3, 320, (2, 9))
    with torch.no_grad():
        before = model(x).logits
        model.set_attn_implementation("eager")
        after = model(x).logits
    assert model.config._attn_implementation == "eager"
    torch.testing.assert_close(before, after, atol=1e-5, rtol=0)


def test_output_attentions_with_sdpa_returns_none_as_native_does(family):
    """SDPA computes no attention weights, so (as for native models) none are returned; transformers warns once."""
    model = family.model(attn_implementation="sdpa")
    out = model(torch.tensor([[4, 5, 6]]), output_attentions=True)
    assert out.attentions == ()


def test_eager_attention_rows_are_causal_probability_distributions(family):
    model = family.model(attn_implementation="eager")
    with torch.no_grad():
        attentions = model(torch.randint(3, 320, (1, 8)), output_attentions=True).attentions
    for layer in attentions:
        torch.testing.assert_close(layer.sum(-1), torch.ones_like(layer.sum(-1)))
        assert torch.all(layer.triu(diagonal=1) == 0)


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_changing_a_masked_token_changes_nothing(family, kernel):
    model = family.model(attn_implementation=kernel)
    x, mask = _padded_batch()
    y = x.clone()
    y[1, :4] = torch.tensor([7, 8, 9, 10])  # the left-padded positions
    y[2, 8:] = torch.tensor([11, 12, 13])  # the right-padded positions
    with torch.no_grad():
        a = model(x, attention_mask=mask).logits
        b = model(y, attention_mask=mask).logits
    keep = mask.bool()
    torch.testing.assert_close(a[keep], b[keep], atol=1e-6, rtol=0)
    x_unmasked = x.clone()
    x_unmasked[1, 6] = 99  # an attended token does change later outputs: the comparison above is not vacuous
    with torch.no_grad():
        c = model(x_unmasked, attention_mask=mask).logits
    assert not torch.allclose(a[1, 7:], c[1, 7:])


def test_gradient_checkpointing_gives_the_same_gradients(family):
    x = torch.randint(3, 320, (2, 13))
    grads = []
    for checkpointing in (False, True):
        model = family.model(seed=4).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.is_activation_checkpointing
        model(x, labels=x).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(model.parameters()))
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5, msg=name)


def test_over_long_input_raises_a_value_error_with_both_numbers(family):
    model = family.model()  # 64 positions
    with pytest.raises(ValueError, match=r"Input of 65 tokens .* max_position_embeddings=64"):
        model(torch.randint(3, 320, (1, 65)))


def test_cache_growing_past_the_positions_raises_a_value_error(family):
    model = family.model()
    out = model(torch.randint(3, 320, (1, 64)), use_cache=True)
    with pytest.raises(ValueError, match=r"Input of 65 tokens \(64 cached \+ 1 new\)"):
        model(torch.tensor([[5]]), cache=out.cache, use_cache=True)


def test_generate_beyond_the_positions_raises_a_value_error(family):
    model = family.model()
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        model.generate(torch.randint(3, 320, (1, 60)), max_new_tokens=10, min_new_tokens=10, do_sample=False)


def test_inputs_embeds_give_the_same_logits_as_input_ids(family):
    model = family.model()
    x = torch.randint(3, 320, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(inputs_embeds=model.get_input_embeddings()(x)).logits, model(x).logits)
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model(x, inputs_embeds=model.get_input_embeddings()(x))


def test_return_dict_false_returns_a_tuple_with_loss_first(family):
    model = family.model()
    x = torch.randint(3, 320, (1, 5))
    loss, logits = model(x, labels=x, return_dict=False, use_cache=False)[:2]
    assert loss.ndim == 0 and logits.shape == (1, 5, 320)


def test_base_model_returns_hidden_states_of_the_model_width(family):
    torch.manual_seed(0)
    base = family.base(family.config()).eval()
    out = base(torch.randint(3, 320, (2, 5)), output_hidden_states=True)
    assert isinstance(out, BaseModelOutputWithPast)
    assert out.last_hidden_state.shape == (2, 5, base.config.hidden_size)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


def test_logits_to_keep_computes_only_the_last_positions(family):
    model = family.model()
    x = torch.randint(3, 320, (2, 9))
    with torch.no_grad():
        full = model(x).logits
        last = model(x, logits_to_keep=1).logits
    assert last.shape == (2, 1, 320)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-6, rtol=0)


def test_resize_token_embeddings_grows_embeddings_and_head(family):
    model = family.model()
    model.resize_token_embeddings(400)
    assert model.config.vocab_size == 400
    assert model.get_input_embeddings().weight.shape[0] == 400
    assert model.get_output_embeddings().weight.shape[0] == 400
    assert model(torch.tensor([[399, 5]])).logits.shape == (1, 2, 400)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert tied == model.config.tie_word_embeddings


def test_gpt_head_is_tied_and_llama_head_is_not_by_default(family):
    model = family.model()
    same = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert same == (family.name == "gpt")
    tied = family.model(tie_word_embeddings=True)
    assert tied.get_output_embeddings().weight is tied.get_input_embeddings().weight


def test_dropout_is_active_in_training_and_off_in_eval():
    from conftest import GPT

    model = GPT.model(hidden_dropout=0.5, embedding_dropout=0.5, attention_dropout=0.5)
    x = torch.randint(3, 320, (1, 6))
    with torch.no_grad():
        assert torch.equal(model(x).logits, model(x).logits)
        model.train()
        assert not torch.equal(model(x).logits, model(x).logits)


def test_fresh_weights_have_the_initialisation_statistics_of_the_native_model(family):
    # GPT-2's residual projections start at initializer_range / sqrt(2 * n_layer); everything else N(0, 0.02),
    # norms at 1, biases at 0. Compared tensor by tensor with transformers' own freshly initialised model.
    config = family.config(hidden_size=128, num_attention_heads=4, intermediate_size=512)
    torch.manual_seed(0)
    ours = family.causal_lm(config)
    torch.manual_seed(1)
    native = type(family.to_native(ours))(family.native_config(config))
    native_params = family.native_state_dict(dict(native.state_dict()))
    for name, tensor in ours.state_dict().items():
        theirs = native_params[name]
        assert abs(tensor.float().std() - theirs.float().std()) <= 0.05 * theirs.float().std() + 1e-6, name
        assert abs(tensor.float().mean() - theirs.float().mean()) <= 0.01, name


@pytest.mark.parametrize("num_items", [None, 23])
def test_causal_lm_loss_equals_transformers_loss_and_gradient(family, num_items):
    from transformers.loss.loss_utils import ForCausalLMLoss

    from scratchformers import modeling_common as modeling

    assert family.model().loss_function is modeling.causal_lm_loss
    generator = torch.Generator().manual_seed(3)
    for vocab_size, shape in [(320, (3, 11)), (5000, (2, 300))]:  # one row block, and several (2**20 // 5000 rows)
        logits = torch.randn(*shape, vocab_size, generator=generator)
        labels = torch.randint(0, vocab_size, shape, generator=generator)
        labels[0, :4] = -100
        theirs, ours = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        n = None if num_items is None else torch.tensor(num_items)
        expected = ForCausalLMLoss(theirs, labels, vocab_size, num_items_in_batch=n)
        got = modeling.causal_lm_loss(ours, labels, vocab_size, num_items_in_batch=n)
        (expected * 3).backward()
        (got * 3).backward()
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-6)
        torch.testing.assert_close(ours.grad, theirs.grad, atol=1e-7, rtol=1e-5)
        shifted = labels.roll(-1, dims=1)
        torch.testing.assert_close(
            modeling.causal_lm_loss(logits, None, vocab_size, shift_labels=shifted),
            ForCausalLMLoss(logits, None, vocab_size, shift_labels=shifted),
            atol=1e-5, rtol=1e-6,
        )


def test_a_loss_function_set_on_the_model_is_the_one_used(family):
    model = family.model()
    x = torch.randint(3, 320, (2, 9))
    calls = []

    def constant_loss(logits, labels, vocab_size, **kwargs):
        calls.append(vocab_size)
        return logits.sum() * 0 + 7.0

    model.loss_function = constant_loss
    assert model(x, labels=x).loss.item() == 7.0 and calls == [model.config.vocab_size]


def test_causal_lm_loss_under_torch_compile_gives_the_same_loss_and_gradient():
    from transformers.loss.loss_utils import ForCausalLMLoss

    from scratchformers import modeling_common

    logits = torch.randn(2, 7, 50, generator=torch.Generator().manual_seed(4))
    labels = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(5))
    labels[1, :3] = -100
    compiled, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = torch.compile(modeling_common.causal_lm_loss, backend="aot_eager")(compiled, labels, 50)
    expected = ForCausalLMLoss(theirs, labels, 50)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(compiled.grad, theirs.grad, atol=1e-7, rtol=1e-5)
