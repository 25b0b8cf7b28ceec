"""Capabilities native Llama / GPT-2 have, proved on ours: compiled static-cache generation, padding-free batches,
keyword arguments reaching the attention function, output capture, custom 4-D masks, RoPE scaling, parallel
plans, token-classification and question-answering heads."""

import re

import pytest
import torch
from transformers import (
    AttentionInterface,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    LlamaForQuestionAnswering,
    LlamaForTokenClassification,
)
from transformers.generation.configuration_utils import CompileConfig
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import scratchformers as sf
from scratchformers import conversion, modeling_common, modeling_gpt, modeling_llama2

from conftest import GPT, LLAMA


def native_twin(model):
    """transformers' own causal LM with the weights of `model`."""
    native = {"gpt": GPT2LMHeadModel, "llama2": LlamaForCausalLM}[model.config.model_type.removeprefix("scratch_")]
    family = GPT if isinstance(model, sf.GPTForCausalLM) else LLAMA
    twin = native(family.native_config(model.config))
    conversion.load_state_dict_strict(twin, family.native_state_dict(model.state_dict()))
    return twin.eval()


# ---- torch.compile and the static cache -------------------------------------------------------------------------


def test_forward_traces_as_one_graph_without_breaks(family):
    model = family.model()
    compiled = torch.compile(model.forward, fullgraph=True, backend="eager")  # fullgraph: a break is an error
    x = torch.randint(3, 320, (2, 9))
    mask = torch.ones_like(x)
    mask[1, :3] = 0
    with torch.no_grad():
        torch.testing.assert_close(compiled(input_ids=x, attention_mask=mask).logits,
                                   model(input_ids=x, attention_mask=mask).logits)


def test_compiled_static_cache_generation_equals_dynamic_and_does_not_recompile_for_a_shorter_prompt(family):
    torch._dynamo.reset()
    model = family.model()
    config = CompileConfig(fullgraph=True, backend="eager", dynamic=False, mode=None)
    config._compile_all_devices = True  # generate() compiles on GPUs only unless told
    long, short = torch.randint(3, 320, (1, 12)), torch.randint(3, 320, (1, 7))
    greedy = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    expected = [model.generate(prompt, **greedy) for prompt in (long, short)]
    from torch._dynamo.utils import counters

    got = [model.generate(long, cache_implementation="static", compile_config=config, **greedy)]
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1 and hasattr(model, "_compiled_call")  # the decode steps ran compiled
    got.append(model.generate(short, cache_implementation="static", compile_config=config, **greedy))
    assert counters["stats"]["unique_graphs"] == graphs  # same static shapes: no new graph
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_bad_token_ids_are_a_clear_error_in_eager_mode(family):
    model = family.model()
    for bad in (-1, model.config.vocab_size):
        with pytest.raises(ValueError, match=rf"token id {bad} is outside the model's vocabulary \(ids 0..319"):
            model(torch.tensor([[5, bad, 7]]))
    with pytest.raises(ValueError, match="token id 320"):
        model.generate(torch.tensor([[5, 320]]), max_new_tokens=2)


# ---- padding-free batches and keyword arguments --------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_a_flattened_batch_with_restarting_positions_equals_the_padded_batch(family, kernel):
    model = family.model(attn_implementation=kernel)
    lengths = [40, 30, 23]  # 93 tokens in one row, more than the 64 positions; every position is below 64
    seqs = [torch.randint(3, 320, (n,)) for n in lengths]
    padded = torch.zeros(len(seqs), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(padded)
    for i, s in enumerate(seqs):
        padded[i, : len(s)], mask[i, : len(s)] = s, 1
    flat = torch.cat(seqs)[None]  # (1, 93)
    positions = torch.cat([torch.arange(n) for n in lengths])[None]  # restarts at every sequence
    with torch.no_grad():
        expected = model(padded, attention_mask=mask).logits
        got = model(flat, position_ids=positions).logits  # use_cache=True from the config, as in training
        native = native_twin(model)
        native.set_attn_implementation(kernel)
        native_default = native(flat, position_ids=positions).logits
        native_no_cache = native(flat, position_ids=positions, use_cache=False).logits
    for i, part in enumerate(got[0].split(lengths)):
        torch.testing.assert_close(part, expected[i, : lengths[i]], atol=1e-5, rtol=1e-4)
    # native models need use_cache=False for this; with their default the second sequence sees the first
    torch.testing.assert_close(native_no_cache, got, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(native_default, got, atol=1e-3)


def test_keyword_arguments_reach_the_attention_function(family):
    seen = []

    def probe(module, query, key, value, attention_mask, **kwargs):
        seen.append(kwargs)
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("kwargs_probe", probe)
    model = family.model(attn_implementation="kwargs_probe")
    x = torch.randint(3, 320, (1, 6))
    with torch.no_grad():
        out = model(x, cu_seq_lens_q=torch.tensor([0, 6]), max_length_q=6)
        model.set_attn_implementation("sdpa")
        expected = model(x).logits
    assert len(seen) == model.config.num_hidden_layers
    assert all(torch.equal(call["cu_seq_lens_q"], torch.tensor([0, 6])) and call["max_length_q"] == 6 for call in seen)
    torch.testing.assert_close(out.logits, expected)


# ---- what the model returns besides logits ---------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_output_attentions_and_hidden_states_behave_as_native(family, kernel):
    model = family.model(attn_implementation=kernel)
    native = native_twin(model)
    native.set_attn_implementation(kernel)
    x = torch.randint(3, 320, (2, 8))
    with torch.no_grad():
        ours = model(x, output_attentions=True, output_hidden_states=True)
        theirs = native(x, output_attentions=True, output_hidden_states=True)
    assert len(ours.attentions) == len(theirs.attentions)  # eager: one per layer; SDPA: none, with a warning
    for a, b in zip(ours.attentions + ours.hidden_states, theirs.attentions + theirs.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert len(ours.hidden_states) == model.config.num_hidden_layers + 1


def test_chosen_hidden_states_are_the_only_ones_captured(family):
    model = family.model()
    x = torch.randint(3, 320, (1, 5))
    with torch.no_grad():
        every = model(x, output_hidden_states=True).hidden_states
        chosen = model(x, output_hidden_states=[1, -1]).hidden_states
    assert [h is None for h in chosen] == [i not in (1, len(every) - 1) for i in range(len(every))]
    torch.testing.assert_close(chosen[1], every[1])
    torch.testing.assert_close(chosen[-1], every[-1])


def test_a_hand_made_4d_mask_equals_the_2d_mask(family):
    model = family.model(attn_implementation="eager")
    x = torch.randint(3, 320, (2, 7))
    mask2d = torch.ones_like(x)
    mask2d[1, :2] = 0  # left padding
    allowed = torch.tril(torch.ones(7, 7, dtype=torch.bool))[None, None] & mask2d.bool()[:, None, None, :]
    mask4d = torch.zeros(2, 1, 7, 7).masked_fill(~allowed, torch.finfo(torch.float32).min)  # (B, 1, T, S)
    with torch.no_grad():
        expected = model(x, attention_mask=mask2d).logits
        got = model(x, attention_mask=mask4d).logits
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, 2:], expected[1, 2:], atol=1e-5, rtol=1e-5)


# ---- RoPE scaling (LLaMA2) ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rope", [
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "dynamic", "factor": 2.0},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 16},
])
def test_scaled_rope_gives_native_llama_logits_and_changes_them(rope):
    plain = LLAMA.model(seed=3)
    scaled = LLAMA.model(seed=3, rope_parameters={**rope, "rope_theta": 10000.0})
    native = native_twin(scaled)
    assert native.config.rope_parameters["rope_type"] == rope["rope_type"]
    # past the "original" 16 positions of yarn/llama3; dynamic RoPE rescales past max_position_embeddings=64 only
    x = torch.randint(3, 320, (1, 80 if rope["rope_type"] == "dynamic" else 40))
    with torch.no_grad():
        ours = scaled(x).logits
        torch.testing.assert_close(ours, native(x).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(ours, native_twin(plain)(x).logits, atol=1e-4)  # native takes 80 positions too
        if rope["rope_type"] == "dynamic":
            with pytest.raises(ValueError, match="max_position_embeddings=64"):
                plain(x)  # our plain RoPE stops at the trained length


def test_the_plain_rope_formula_is_the_default_and_a_rope_theta_config_still_loads(tmp_path):
    config = LLAMA.config(rope_theta=500000.0)
    assert config.rope_parameters == {"rope_type": "default", "rope_theta": 500000.0} and config.rope_theta == 500000.0
    inv_freq, scale = modeling_llama2.Llama2RotaryEmbedding.compute_default_rope_parameters(config)
    hd = config.head_dim
    torch.testing.assert_close(inv_freq, torch.tensor([500000.0 ** (-2 * i / hd) for i in range(hd // 2)]))
    assert scale == 1.0
    old = config.to_dict()
    old.pop("rope_parameters")
    old["rope_theta"] = 1234.0  # a config.json written before rope_parameters
    assert sf.Llama2Config.from_dict(old).rope_parameters["rope_theta"] == 1234.0


# ---- parallel plans -------------------------------------------------------------------------------------------


def test_the_tensor_and_pipeline_parallel_plans_cover_every_llama2_weight():
    model = LLAMA.model()
    plan = {**{f"model.{k}": v for k, v in sf.Llama2Config.base_model_tp_plan.items()}, **model._tp_plan}
    patterns = {re.compile(k.replace(".", r"\.").replace("*", r"\d+") + r"\.weight$"): v for k, v in plan.items()}
    for name, param in model.named_parameters():
        styles = [style for pattern, style in patterns.items() if pattern.match(name)]
        if param.ndim == 2 and "embed_tokens" not in name:
            assert len(styles) == 1, name  # every matrix is split one way
    native = LlamaForCausalLM(LLAMA.native_config(model.config))
    assert sf.Llama2Config.base_model_tp_plan == type(native.config).base_model_tp_plan
    assert sf.Llama2Config.base_model_pp_plan == type(native.config).base_model_pp_plan
    for module in sf.Llama2Config.base_model_pp_plan:
        assert hasattr(model.model, module)


# ---- task heads -----------------------------------------------------------------------------------------------


def test_token_classification_and_question_answering_heads_match_native_llama():
    model = LLAMA.model()
    config = LLAMA.config(num_labels=3)
    x = torch.randint(3, 320, (2, 6))
    for ours_class, native_class, field in ((sf.Llama2ForTokenClassification, LlamaForTokenClassification, "logits"),
                                            (sf.Llama2ForQuestionAnswering, LlamaForQuestionAnswering, "start_logits")):
        torch.manual_seed(0)
        ours = ours_class(config).eval()
        ours.model.load_state_dict(model.model.state_dict())
        native_config = LLAMA.native_config(config)
        native_config.num_labels = 3
        native = native_class(native_config).eval()
        native_state = {k.replace("model.", native.base_model_prefix + ".", 1) if k.startswith("model.") else k: v
                        for k, v in ours.state_dict().items()}
        conversion.load_state_dict_strict(native, native_state)
        with torch.no_grad():
            torch.testing.assert_close(getattr(ours(x), field), getattr(native(x), field), atol=1e-5, rtol=1e-5)


def test_gpt_task_heads_keep_gpt_parameter_names_and_train(family):
    config = family.config(num_labels=3)
    x = torch.randint(3, 320, (2, 6))
    token_head = (sf.GPTForTokenClassification if family is GPT else sf.Llama2ForTokenClassification)(config)
    qa_head = (sf.GPTForQuestionAnswering if family is GPT else sf.Llama2ForQuestionAnswering)(config)
    prefix = "transformer." if family is GPT else "model."
    assert all(n.startswith((prefix, "score.", "qa_outputs.")) for n in [*token_head.state_dict(), *qa_head.state_dict()])
    loss = token_head(x, labels=torch.randint(0, 3, (2, 6))).loss
    loss = loss + qa_head(x, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 4])).loss
    loss.backward()
    assert qa_head.get_input_embeddings() is getattr(qa_head, prefix[:-1]).get_input_embeddings()


def test_the_loss_lives_once_and_both_families_use_it(family):
    model = family.model()
    assert model.loss_function is modeling_common.causal_lm_loss
    assert not hasattr(modeling_gpt, "causal_lm_loss") and not hasattr(modeling_llama2, "causal_lm_loss")


# ---- dropout on the residual branches -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", [GPT, LLAMA], ids=lambda f: f.name)
def test_hidden_dropout_regularises_training_and_is_the_identity_in_eval(family):
    """`hidden_dropout` (GPT-2's resid_pdrop; LLaMA2 has it too, native Llama does not) drops units of each block's
    attention and MLP outputs in training only: two training passes differ, eval equals the model without it."""
    plain = family.model(seed=0)
    dropped = family.model(seed=0, hidden_dropout=0.3)
    dropped.load_state_dict(plain.state_dict())
    ids = torch.randint(3, 300, (2, 12))
    dropped.train()
    assert not torch.equal(dropped(ids).logits, dropped(ids).logits)
    plain.eval(), dropped.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(ids).logits, plain(ids).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="hidden_dropout must be in"):
        family.config(hidden_dropout=1.0)
