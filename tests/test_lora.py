"""Hand-rolled LoRA (scratchformers.lora) against PEFT: same outputs, gradients, training and files."""

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import scratchformers as sf
from scratchformers import lora
from scratchformers.lora import LoraSettings, LoRALinear
from scratchformers.peft_utils import get_peft_lora_model, register_peft_defaults

TOKENS = dict(vocab_size=200, bos_token_id=1, eos_token_id=2, pad_token_id=0)
CONFIGS = {
    "gpt": lambda: sf.GPTConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                max_position_embeddings=64, **TOKENS),
    # GQA: 4 query heads share 2 K/V heads, so k_proj and v_proj are 64 -> 32 (narrower than q_proj).
    "llama2": lambda: sf.Llama2Config(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
                                      **TOKENS),
}
CLASSES = {
    ("gpt", "CAUSAL_LM"): sf.GPTForCausalLM,
    ("gpt", "SEQ_CLS"): sf.GPTForSequenceClassification,
    ("llama2", "CAUSAL_LM"): sf.Llama2ForCausalLM,
    ("llama2", "SEQ_CLS"): sf.Llama2ForSequenceClassification,
}
CASES = list(CLASSES)
CASE_IDS = [f"{f}-{t}" for f, t in CASES]


def make_model(family, task, seed=0):
    torch.manual_seed(seed)
    return CLASSES[family, task](CONFIGS[family]()).eval()


def make_batch(task, seed=1):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 200, (3, 12), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0  # a right-padded row
    input_ids[1, 9:] = 0
    if task == "SEQ_CLS":
        labels = torch.tensor([0, 1, 1])
    else:
        labels = input_ids.masked_fill(attention_mask == 0, -100)
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def peft_name(hand_name):
    """PEFT's in-memory parameter name for a hand-rolled parameter name."""
    name = hand_name.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
    if name.startswith("score."):
        name = name.replace("score.", "score.modules_to_save.default.", 1)
    return "base_model.model." + name


def twin_models(family, task, r=4, alpha=8, targets=None, seed=0, randomize_b=True):
    """The same base model with PEFT LoRA and with hand-rolled LoRA, holding identical A, B (and score)."""
    base = make_model(family, task)
    targets = targets or lora.DEFAULT_TARGET_MODULES[f"scratch_{family}"]
    torch.manual_seed(seed)
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(task_type=task, r=r, lora_alpha=alpha,
                                                                 target_modules=targets))
    torch.manual_seed(seed)
    hand = lora.add_lora(copy.deepcopy(base), LoraSettings(r=r, lora_alpha=alpha, target_modules=targets,
                                                          task_type=task))
    peft_params = dict(peft_model.named_parameters())
    with torch.no_grad():
        for name, param in hand.named_parameters():
            if param.requires_grad:
                if randomize_b and ".lora_B." in name:
                    param.normal_(std=0.05)
                peft_params[peft_name(name)].copy_(param)
    return base, peft_model, hand


def test_lora_linear_matches_formula_and_starts_as_identity():
    base = nn.Linear(16, 24)
    layer = LoRALinear(base, r=4, lora_alpha=8)
    x = torch.randn(5, 16)
    assert torch.equal(layer(x), base(x))  # B = 0 at init
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    expected = base(x) + 2.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), expected)
    assert LoRALinear(nn.Linear(16, 24), r=4, lora_alpha=8, use_rslora=True).scaling == 4.0


@pytest.mark.parametrize("family,task", CASES, ids=CASE_IDS)
def test_same_seed_gives_peft_initial_adapters_and_trainable_count(family, task):
    base = make_model(family, task)
    torch.manual_seed(0)
    targets = lora.DEFAULT_TARGET_MODULES[f"scratch_{family}"]
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(task_type=task, r=4, lora_alpha=8,
                                                                 target_modules=targets))
    torch.manual_seed(0)
    hand = lora.add_lora(copy.deepcopy(base), LoraSettings(r=4, lora_alpha=8, task_type=task))
    peft_params = dict(peft_model.named_parameters())
    hand_trainable = [n for n, p in hand.named_parameters() if p.requires_grad]
    assert {peft_name(n) for n in hand_trainable} == {n for n, p in peft_model.named_parameters() if p.requires_grad}
    for name, param in hand.named_parameters():
        if ".lora_" in name:  # each side initialised from the seed alone
            assert torch.equal(param, peft_params[peft_name(name)]), name
    assert any(p.abs().sum() > 0 for n, p in hand.named_parameters() if ".lora_A." in n)
    trainable, _ = lora.count_trainable_parameters(hand)
    assert trainable == peft_model.get_nb_trainable_parameters()[0]


@pytest.mark.parametrize("family,task", CASES, ids=CASE_IDS)
def test_hand_rolled_and_peft_same_outputs_and_gradients(family, task):
    _, peft_model, hand = twin_models(family, task)
    batch = make_batch(task)
    out_peft, out_hand = peft_model(**batch), hand(**batch)
    torch.testing.assert_close(out_hand.logits, out_peft.logits, atol=1e-6, rtol=1e-6)
    out_peft.loss.backward()
    out_hand.loss.backward()
    peft_params = dict(peft_model.named_parameters())
    checked = 0
    for name, param in hand.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
            torch.testing.assert_close(param.grad, peft_params[peft_name(name)].grad, atol=1e-6, rtol=1e-5)
            checked += 1
    assert checked == 2 * len(lora.lora_layers(hand)) + (task == "SEQ_CLS")


def test_gqa_narrow_key_value_projections_are_adapted_with_their_shape():
    hand = lora.add_lora(make_model("llama2", "CAUSAL_LM"), LoraSettings(r=4, target_modules=["k_proj", "v_proj"]))
    layers = lora.lora_layers(hand)
    assert sorted(layers) == sorted(f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("k_proj", "v_proj"))
    for layer in layers.values():
        assert layer.lora_A.weight.shape == (4, 64) and layer.lora_B.weight.shape == (32, 4)


@pytest.mark.parametrize("family,task", [("gpt", "CAUSAL_LM"), ("llama2", "SEQ_CLS")], ids=["gpt-lm", "llama2-cls"])
def test_same_seed_manual_adamw_steps_give_same_loss_trajectory(family, task):
    _, peft_model, hand = twin_models(family, task, randomize_b=False)
    trajectories = []
    for model in (peft_model, hand):
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        losses = []
        for step in range(4):
            loss = model(**make_batch(task, seed=10 + step)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        trajectories.append(losses)
    assert trajectories[0][0] != trajectories[0][-1]  # it trained
    assert trajectories[0] == pytest.approx(trajectories[1], abs=1e-5)


def test_trainer_runs_give_same_loss_trajectory_for_peft_and_hand_rolled(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    _, peft_model, hand = twin_models("gpt", "SEQ_CLS", randomize_b=False)
    g = torch.Generator().manual_seed(0)
    rows = {"input_ids": torch.randint(3, 200, (16, 10), generator=g).tolist(), "labels": [i % 2 for i in range(16)]}
    data = Dataset.from_dict(rows)
    histories = []
    for name, model in (("peft", peft_model), ("hand", hand)):
        args = TrainingArguments(output_dir=str(tmp_path / name), per_device_train_batch_size=4, max_steps=4,
                                 learning_rate=5e-3, logging_steps=1, report_to=[], save_strategy="no", seed=0,
                                 use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=data)
        trainer.train()
        histories.append([h["loss"] for h in trainer.state.log_history if "loss" in h])
    assert len(histories[0]) == 4
    assert histories[0] == pytest.approx(histories[1], abs=1e-5)


@pytest.mark.parametrize("family", ["gpt", "llama2"])
def test_merge_unmerge_and_unload(family):
    base = make_model(family, "CAUSAL_LM")
    original = copy.deepcopy(base.state_dict())
    plain_logits = base(**make_batch("CAUSAL_LM")).logits
    hand = lora.add_lora(base, LoraSettings(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for layer in lora.lora_layers(hand).values():
            layer.lora_B.weight.normal_(std=0.05)
    batch = make_batch("CAUSAL_LM")
    unmerged = hand(**batch).logits
    lora.merge_lora(hand)
    torch.testing.assert_close(hand(**batch).logits, unmerged, atol=1e-5, rtol=1e-5)
    lora.unmerge_lora(hand)
    torch.testing.assert_close(hand(**batch).logits, unmerged, atol=1e-5, rtol=1e-5)
    with lora.lora_disabled(hand):
        base_logits = hand(**batch).logits
    torch.testing.assert_close(base_logits, plain_logits)
    assert not torch.allclose(base_logits, unmerged, atol=1e-4)
    lora.merge_lora(hand)
    with lora.lora_disabled(hand):  # a merged adapter is taken out for the block and put back after it
        torch.testing.assert_close(hand(**batch).logits, base_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hand(**batch).logits, unmerged, atol=1e-5, rtol=1e-5)
    lora.unmerge_lora(hand)
    plain = lora.unload_lora(hand)
    assert not lora.lora_layers(plain) and not any(".lora_" in k for k in plain.state_dict())
    assert set(plain.state_dict()) == set(original)
    torch.testing.assert_close(plain(**batch).logits, unmerged, atol=1e-5, rtol=1e-5)
    changed = [k for k in original if not torch.equal(original[k], plain.state_dict()[k])]
    assert changed and all(k.endswith(".weight") for k in changed)


def test_all_linear_skips_heads_and_patterns_match_like_peft():
    gpt = make_model("gpt", "SEQ_CLS")
    all_linear = lora.find_target_modules(gpt, "all-linear")
    assert "score" not in all_linear and len(all_linear) == 8
    assert lora.find_target_modules(gpt, ["c_proj"]) == ["transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_proj",
                                                         "transformer.h.1.attn.c_proj", "transformer.h.1.mlp.c_proj"]
    assert lora.find_target_modules(gpt, r".*\.attn\.c_proj") == ["transformer.h.0.attn.c_proj",
                                                                 "transformer.h.1.attn.c_proj"]
    assert lora.find_target_modules(gpt, ["transformer.h.1.mlp.c_fc"]) == ["transformer.h.1.mlp.c_fc"]
    llama = make_model("llama2", "CAUSAL_LM")
    assert "lm_head" not in lora.find_target_modules(llama, "all-linear")
    assert lora.find_target_modules(llama, None) == lora.find_target_modules(llama, "all-linear")
    cases = [(["c_proj"], []), (r".*\.attn\.c_proj", []), ("all-linear", []), ("all-linear", ["h.0.mlp.c_fc"]),
             (["c_attn", "c_fc"], r"transformer\.h\.1\..*")]
    for targets, exclude in cases:
        peft_model = get_peft_model(copy.deepcopy(gpt), LoraConfig(task_type="SEQ_CLS", target_modules=targets,
                                                                    exclude_modules=exclude or None))
        peft_targets = sorted(n.removeprefix("base_model.model.") for n, m in peft_model.named_modules()
                              if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
        assert peft_targets == sorted(lora.find_target_modules(gpt, targets, exclude)), (targets, exclude)


def test_bad_settings_and_targets_raise_clear_errors():
    with pytest.raises(ValueError, match="r=0"):
        LoraSettings(r=0)
    with pytest.raises(ValueError, match="lora_dropout=1.5"):
        LoraSettings(lora_dropout=1.5)
    with pytest.raises(ValueError, match="'nope'"):
        lora.add_lora(make_model("gpt", "CAUSAL_LM"), LoraSettings(target_modules=["nope"]))
    hand = lora.add_lora(make_model("gpt", "CAUSAL_LM"), LoraSettings())
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.add_lora(hand, LoraSettings())


@pytest.mark.parametrize("family,task", [("gpt", "SEQ_CLS"), ("llama2", "CAUSAL_LM")], ids=["gpt-cls", "llama2-lm"])
def test_hand_rolled_adapter_loads_in_peft_and_peft_adapter_loads_in_hand_rolled(family, task, tmp_path):
    base, peft_model, hand = twin_models(family, task)
    batch = make_batch(task)
    expected = hand(**batch).logits

    lora.save_lora_adapter(hand, tmp_path / "hand")
    config = json.loads((tmp_path / "hand" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    with pytest.raises(FileExistsError):
        lora.save_lora_adapter(hand, tmp_path / "hand")
    loaded_by_peft = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "hand").eval()
    torch.testing.assert_close(loaded_by_peft(**batch).logits, expected, atol=1e-6, rtol=1e-6)

    peft_model.save_pretrained(tmp_path / "peft")
    loaded_by_hand = lora.load_lora_adapter(copy.deepcopy(base), tmp_path / "peft")
    torch.testing.assert_close(loaded_by_hand(**batch).logits, expected, atol=1e-6, rtol=1e-6)
    assert lora.count_trainable_parameters(loaded_by_hand)[0] == lora.count_trainable_parameters(hand)[0]

    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        lora.load_lora_adapter(copy.deepcopy(base), tmp_path / "missing")


def test_lora_matmul_cost_for_a_4096_square_layer_matches_torch_flop_counter():
    d, r, n = 4096, 8, 2048
    cost = lora.lora_matmul_cost(d, d, r, n)
    x = torch.empty(n, d, device="meta")
    a, b = torch.empty(r, d, device="meta"), torch.empty(d, r, device="meta")
    with FlopCounterMode(display=False) as bax:
        (x @ a.T) @ b.T
    with FlopCounterMode(display=False) as ba_first:
        ba = b @ a  # (d, d): as large as W0 itself
        x @ ba.T
    assert cost["B(Ax)"]["flops"] == bax.get_total_flops() == 2 * n * r * 2 * d
    assert cost["(BA)x"]["flops"] == ba_first.get_total_flops()
    assert cost["(BA)x"]["extra_bytes"] == ba.numel() * 4 == 64 * 2**20
    assert cost["B(Ax)"]["extra_bytes"] == n * r * 4
    assert cost["flops_ratio"] > 250 and cost["memory_ratio"] == 1024


@pytest.mark.parametrize("family", ["gpt", "llama2"])
def test_peft_helper_defaults_generate_and_merge_and_unload(family):
    register_peft_defaults()
    lm = get_peft_lora_model(make_model(family, "CAUSAL_LM"), r=4, lora_dropout=0.0)
    assert lm.peft_config["default"].task_type == "CAUSAL_LM"
    assert set(lm.peft_config["default"].target_modules) == set(lora.DEFAULT_TARGET_MODULES[f"scratch_{family}"])
    with torch.no_grad():
        for name, param in lm.named_parameters():
            if ".lora_B." in name:
                param.normal_(std=0.05)
    prompt = torch.tensor([[5, 6, 7]])
    generated = lm.generate(input_ids=prompt, max_new_tokens=4, do_sample=False)
    merged = lm.merge_and_unload()
    assert type(merged) is CLASSES[family, "CAUSAL_LM"]
    assert torch.equal(merged.generate(input_ids=prompt, max_new_tokens=4, do_sample=False), generated)
    cls = get_peft_lora_model(make_model(family, "SEQ_CLS"))
    assert cls.peft_config["default"].task_type == "SEQ_CLS"
    assert any("score" in n for n, p in cls.named_parameters() if p.requires_grad)
    # after register_peft_defaults a bare LoraConfig finds the targets by model_type
    bare = get_peft_model(make_model(family, "CAUSAL_LM"), LoraConfig(task_type="CAUSAL_LM"))
    assert set(bare.peft_config["default"].target_modules) == set(lora.DEFAULT_TARGET_MODULES[f"scratch_{family}"])


@pytest.mark.parametrize("family", ["gpt", "llama2"])
def test_hand_rolled_training_step_peak_memory_is_not_above_peft(family):
    from torch.profiler import ProfilerActivity, profile

    _, peft_model, hand = twin_models(family, "SEQ_CLS")
    batch = make_batch("SEQ_CLS")
    peaks = {}
    for name, model in (("peft", peft_model), ("hand", hand)):
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])

        def step():
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # AdamW state now exists, as in every later step
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        # memory each op allocated net of what it freed (public FunctionEvent fields), in the order the ops ran
        sizes = [e.self_cpu_memory_usage for e in sorted(prof.events(), key=lambda e: e.time_range.start)]
        live, peak = 0, 0
        for size in sizes:
            live += size
            peak = max(peak, live)
        peaks[name] = peak
    assert 0 < peaks["hand"] <= peaks["peft"]


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_embedding_lora_by_hand_equals_peft_outputs_gradients_merge_and_files(family, tmp_path):
    """LoRA on the input embedding (a BERT classifier; a GPT whose embedding is tied to its LM head): PEFT's layout,
    initial values, outputs, gradients and adapter files, and merging folds it into the table."""
    if family == "bert":
        config = sf.BertConfig(vocab_size=TOKENS["vocab_size"], hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, num_labels=2, pad_token_id=0)
        base, task = sf.BertForSequenceClassification(config).eval(), "SEQ_CLS"
    else:
        base, task = make_model("gpt", "CAUSAL_LM"), "CAUSAL_LM"
    name = lora.input_embedding_name(base)
    targets = lora.family_target_modules(base, embeddings=True)
    assert targets[-1] == name
    torch.manual_seed(3)
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(task_type=task, r=4, lora_alpha=8,
                                                                 target_modules=targets))
    torch.manual_seed(3)
    hand = lora.add_lora(copy.deepcopy(base), LoraSettings(r=4, lora_alpha=8, target_modules=targets, task_type=task))
    layer = hand.get_submodule(name)
    assert isinstance(layer, lora.LoRAEmbedding) and layer.lora_embedding_A.shape == (4, TOKENS["vocab_size"])
    peft_layer = peft_model.base_model.model.get_submodule(name)
    assert torch.equal(layer.lora_embedding_B, peft_layer.lora_embedding_B["default"])  # the same draws
    assert not layer.lora_embedding_A.any()  # A starts at zero: the model starts as the base model
    with torch.no_grad():  # a non-zero update, the same in both
        layer.lora_embedding_A.normal_()
        peft_layer.lora_embedding_A["default"].copy_(layer.lora_embedding_A)
    batch = make_batch(task)
    hand_out, peft_out = hand(**batch), peft_model(**batch)
    assert torch.allclose(hand_out.logits, peft_out.logits, atol=1e-6)
    hand_out.loss.backward()
    peft_out.loss.backward()
    assert torch.allclose(layer.lora_embedding_A.grad, peft_layer.lora_embedding_A["default"].grad, atol=1e-6)
    assert torch.allclose(layer.lora_embedding_B.grad, peft_layer.lora_embedding_B["default"].grad, atol=1e-6)
    assert layer.lora_embedding_A.grad[:, 0].abs().max() == 0  # the padding id gets no update, as in nn.Embedding

    lora.save_lora_adapter(hand, tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapter").eval()
    hand.eval()
    with torch.no_grad():
        expected = hand(**batch).logits
        assert torch.allclose(reloaded(**batch).logits, expected, atol=1e-6)
        if family == "gpt":  # the table is also the LM head: merging would change the head too
            with pytest.raises(ValueError, match="tied to the LM head"):
                lora.merge_lora(hand)
            with pytest.raises(ValueError, match="tied to the LM head"):
                lora.unload_lora(hand)
            assert torch.allclose(hand(**batch).logits, expected)  # nothing was changed
            return
        lora.merge_lora(hand)
        assert torch.allclose(hand(**batch).logits, expected, atol=1e-5)
        plain = lora.unload_lora(hand)
        assert type(plain.get_submodule(name)) is nn.Embedding
        assert torch.allclose(plain(**batch).logits, expected, atol=1e-5)
