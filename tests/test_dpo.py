"""DPO through TRL: the hand-written loss equals TRL's (values and gradients), the CLI trains and saves models that
AutoModelForCausalLM and PEFT load, preference files and pair building, and the errors for bad input."""

import json
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import scratchformers  # noqa: F401
from scratchformers import lora
from scratchformers.cli import main
from scratchformers.tokenization_scratch import train_tokenizer_from_iterator
from scratchformers.training.common import build_config
from scratchformers.training.dpo import ScratchDPOTrainer, completion_logps, dpo_loss
from scratchformers.training.preferences import (
    build_preference_pairs,
    corrupt_final_number,
    final_answer,
    read_preference_file,
)
from scratchformers.training.synthetic import make_instruction_data, make_story_corpus
from trl import DPOConfig

SHAPES = {
    "gpt-micro": "num_hidden_layers=2,hidden_size=64,num_attention_heads=4,max_position_embeddings=128",
    "llama2-tiny": "num_hidden_layers=2,hidden_size=64,num_attention_heads=4,num_key_value_heads=2,"
                   "intermediate_size=128,max_position_embeddings=128",
}


def counting_pairs(n: int) -> list[dict]:
    """Pairs the model can learn: the full count is preferred to one that stops a number early."""
    pairs = []
    for i in range(n):
        start, length = 1 + i % 12, 3 + i % 4
        numbers = [str(k) for k in range(start, start + length)]
        pairs.append({"prompt": f"Count from {numbers[0]} to {numbers[-1]}.", "chosen": ", ".join(numbers) + ".",
                      "rejected": ", ".join(numbers[:-1]) + "."})
    return pairs


def refused(argv, capsys, pattern: str):
    """The CLI exits with 2 and one error line matching `pattern` (a bad input is not a traceback)."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    texts = make_story_corpus(120, seed=5) + [json.dumps(r) for r in make_instruction_data(100)]
    folder = tmp_path_factory.mktemp("dpo_tokenizer")
    train_tokenizer_from_iterator(texts, vocab_size=300, show_progress=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=list(SHAPES))
def model_dir(request, tokenizer_dir, tmp_path_factory):
    """A small random model of each family with a chat-template tokenizer (an "SFT model" as far as DPO sees)."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    folder = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(build_config(request.param, tokenizer, SHAPES[request.param])).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def dpo_config(tmp_path, **overrides):
    settings = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                    report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True, logging_steps=1,
                    gradient_checkpointing=False, max_length=128, seed=0, bf16=False)
    return DPOConfig(**{**settings, **overrides})


@pytest.mark.parametrize("adapter", ["none", "peft", "hand"])
def test_hand_dpo_loss_and_gradients_equal_trls(model_dir, tmp_path, adapter):
    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft_config = None
    if adapter == "peft":
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=lora.family_target_modules(model))
    elif adapter == "hand":
        lora.add_lora(model, lora.LoraSettings(r=4, lora_alpha=8))
    pairs = read_preference_file(write_jsonl(tmp_path / "pairs.jsonl", counting_pairs(8)))
    trainer = ScratchDPOTrainer(model=model, args=dpo_config(tmp_path), train_dataset=Dataset.from_list(pairs),
                                processing_class=tokenizer, peft_config=peft_config)
    policy = trainer.model.train()  # dropout is off (DPOConfig.disable_dropout); "train" names the metrics
    torch.manual_seed(1)
    with torch.no_grad():  # move the trained weights away from the reference, so the loss is not log 2 everywhere
        for name, param in policy.named_parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    batch = next(iter(trainer.get_train_dataloader()))
    trainable = [p for p in policy.parameters() if p.requires_grad]

    trl_loss = trainer._compute_loss(policy, batch, False)
    trl_grads = torch.autograd.grad(trl_loss, trainable)

    ids = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    chosen, rejected = completion_logps(policy, *ids).chunk(2)
    with torch.no_grad(), (trainer.reference() or torch.enable_grad()):
        ref_chosen, ref_rejected = completion_logps(trainer.ref_model or policy, *ids).chunk(2)
    loss, chosen_rewards, rejected_rewards = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=trainer.beta)
    hand_grads = torch.autograd.grad(loss, trainable)

    assert (chosen_rewards - rejected_rewards).abs().max() > 1e-4  # the policy is not the reference
    torch.testing.assert_close(loss, trl_loss, rtol=0, atol=1e-6)
    for ours, theirs in zip(hand_grads, trl_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert trainer._metrics["train"]["rewards/margins"][-1] == pytest.approx(
        (chosen_rewards - rejected_rewards).mean().item(), abs=1e-5)


def test_hand_reference_is_the_model_with_its_adapter_off(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    lora.add_lora(model, lora.LoraSettings(r=4, lora_alpha=8))
    with torch.no_grad():
        for layer in lora.lora_layers(model).values():
            layer.lora_B.weight.normal_()
    ids = torch.randint(3, 200, (2, 12))
    mask, completion = torch.ones_like(ids), torch.cat([torch.zeros(2, 6), torch.ones(2, 6)], 1).long()
    with torch.no_grad():
        adapted = completion_logps(model, ids, mask, completion)
        with lora.lora_disabled(model):
            off = completion_logps(model, ids, mask, completion)
        reference = completion_logps(base, ids, mask, completion)
    torch.testing.assert_close(off, reference, rtol=0, atol=1e-5)
    assert (adapted - reference).abs().max() > 1e-3


@pytest.mark.parametrize("adapter,implementation", [("none", "trl"), ("peft", "hand"), ("hand", "trl")])
def test_dpo_cli_trains_and_saves_a_model_that_loads(model_dir, tmp_path, adapter, implementation):
    write_jsonl(tmp_path / "pairs.jsonl", counting_pairs(40))
    out = tmp_path / "dpo"
    code = main(["dpo", "--model_name_or_path", str(model_dir), "--train_file", str(tmp_path / "pairs.jsonl"),
                 "--output_dir", str(out), "--lora", adapter, "--implementation", implementation, "--max_steps", "6",
                 "--learning_rate", "5e-3", "--eval_strategy", "steps", "--eval_steps", "6", "--logging_steps", "2",
                 "--report_to", "none", "--save_strategy", "no", "--validation_split_percentage", "20",
                 "--disable_tqdm", "true", "--lora_r", "4"])
    assert code == 0
    results = json.loads((out / "all_results.json").read_text())
    assert results["global_step"] == 6 and 0 <= results["eval_rewards/accuracies"] <= 1
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("rewards/margins" in entry for entry in history)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("Count from 1 to 3.", return_tensors="pt").input_ids
    if adapter == "peft":
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(out)
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    else:
        model = AutoModelForCausalLM.from_pretrained(out)
        assert not any("lora" in name for name, _ in model.named_parameters())
    trained = model(ids).logits
    base = AutoModelForCausalLM.from_pretrained(model_dir)(ids).logits
    assert (trained - base).abs().max() > 1e-4  # DPO moved the weights
    if adapter == "hand":  # the adapter folder loads in PEFT and gives the merged model's outputs
        from peft import PeftModel

        reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), out / "adapter")
        torch.testing.assert_close(reloaded(ids).logits, trained, rtol=1e-4, atol=1e-4)


def test_dpo_learns_to_prefer_the_chosen_answers(model_dir, tmp_path):
    """A few dozen steps on the counting pairs: the held-out pairs are preferred the right way round."""
    write_jsonl(tmp_path / "train.jsonl", counting_pairs(48))
    write_jsonl(tmp_path / "held_out.jsonl", counting_pairs(60)[48:])
    out = tmp_path / "dpo"
    code = main(["dpo", "--model_name_or_path", str(model_dir), "--train_file", str(tmp_path / "train.jsonl"),
                 "--validation_file", str(tmp_path / "held_out.jsonl"), "--output_dir", str(out), "--max_steps",
                 "24", "--learning_rate", "3e-3", "--beta", "0.5", "--report_to", "none", "--save_strategy", "no",
                 "--eval_strategy", "no", "--disable_tqdm", "true"])
    assert code == 0
    assert json.loads((out / "all_results.json").read_text())["eval_rewards/accuracies"] >= 0.9


def test_preference_files_name_the_bad_record(tmp_path):
    good = {"prompt": "Count from 1 to 3.", "chosen": "1, 2, 3.", "rejected": "1, 2."}
    cases = {
        "missing ['rejected']": {"prompt": "p", "chosen": "c"},
        "'chosen' is empty": {**good, "chosen": "  "},
        "the same text": {**good, "rejected": good["chosen"]},
        "one assistant message": {**good, "chosen": [{"role": "user", "content": "x"}]},
    }
    for message, bad in cases.items():
        path = write_jsonl(tmp_path / "pairs.jsonl", [good, good, bad])
        with pytest.raises(ValueError, match=f"pairs.jsonl:3: .*{message.replace('[', '.').replace(']', '.')}"):
            read_preference_file(path)
    pairs = read_preference_file(write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Add.", "input": "2 and 3", "chosen": "5", "rejected": "6"}]))
    assert pairs[0]["prompt"] == [{"role": "user", "content": "Add.\n\n2 and 3"}]
    assert pairs[0]["chosen"] == [{"role": "assistant", "content": "5"}]


def test_trl_jobs_train_in_fp32_on_a_cpu_unless_told():
    """TRL's configs turn bf16 autocast on by default, CPUs included (9x slower steps here); the CLI does not."""
    from scratchformers.cli import build_parser

    for job in ("dpo", "grpo"):
        config = build_parser(job).parse_args_into_dataclasses(["--output_dir", "x"])[1]
        assert config.bf16 is torch.cuda.is_available()
        config = build_parser(job).parse_args_into_dataclasses(["--output_dir", "x", "--bf16", "true"])[1]
        assert config.bf16 is True


def test_dpo_refuses_a_model_without_a_chat_template_and_losses_the_hand_code_lacks(model_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "pairs.jsonl", counting_pairs(4))
    bare = tmp_path / "bare"
    AutoModelForCausalLM.from_pretrained(model_dir).save_pretrained(bare)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    common = ["--train_file", str(tmp_path / "pairs.jsonl"), "--output_dir", str(tmp_path / "out"),
              "--report_to", "none"]
    refused(["dpo", "--model_name_or_path", str(bare), *common], capsys, "bare: the tokenizer has no chat template")
    refused(["dpo", "--model_name_or_path", str(model_dir), *common, "--implementation", "hand", "--loss_type", "ipo"],
            capsys, "--loss_type .*ipo.* needs --implementation trl")
    refused(["dpo", "--model_name_or_path", str(model_dir), *common, "--max_length", "4096"], capsys,
            "--max_length 4096 is longer than the model's context")


def test_build_preferences_corrupts_the_final_number_or_borrows_another_answer(tmp_path, capsys):
    gsm = {"instruction": "Tom has 3 bags of 4 apples. How many apples?", "input": "",
           "output": "He has 3*4=<<3*4=12>>12 apples.\n#### 12"}
    other = {"instruction": "Name a colour.", "input": "", "output": "Red."}
    pairs = build_preference_pairs([gsm, other, {**other, "output": "Blue."}], seed=0)
    assert pairs[0]["chosen"] == gsm["output"]
    assert final_answer(pairs[0]["rejected"]) not in (None, "12")
    assert pairs[0]["rejected"].split("####")[0] == gsm["output"].split("####")[0]  # only the conclusion is wrong
    outputs = {gsm["output"], "Red.", "Blue."}
    for pair in pairs[1:]:  # another row's answer
        assert pair["rejected"] in outputs - {pair["chosen"]}
    assert corrupt_final_number("no number here", __import__("random").Random(0)) is None
    assert final_answer("so\n#### 1,250") == "1250"
    rng = __import__("random").Random(0)
    assert all(final_answer(corrupt_final_number("so\n#### 0", rng)) != "0" for _ in range(50))
    with pytest.raises(ValueError, match="row 2: the output has no final '#### N'"):
        build_preference_pairs([gsm, other], rejected="number")

    sft = write_jsonl(tmp_path / "sft.jsonl", [gsm, other, {**other, "output": "Blue."}])
    out = tmp_path / "pairs.jsonl"
    assert main(["build-preferences", "--input_file", str(sft), "--output_file", str(out)]) == 0
    assert len(read_preference_file(out)) == 3
    refused(["build-preferences", "--input_file", str(sft), "--output_file", str(out)], capsys, "pass --overwrite")
    write_jsonl(sft, [gsm, {"instruction": "x"}])
    refused(["build-preferences", "--input_file", str(sft), "--output_file", str(out), "--overwrite", "true"], capsys,
            r"sft.jsonl:2: .*missing \['output'\]")


def test_build_preferences_rejects_the_sft_models_own_wrong_answers(model_dir, tmp_path, capsys):
    gsm = {"instruction": "Tom has 3 bags of 4 apples. How many apples?", "input": "",
           "output": "He has 3*4=<<3*4=12>>12 apples.\n#### 12"}
    colour = {"instruction": "Name a colour.", "input": "", "output": "Red."}
    answers = ["3 + 4 = 7\n#### 7", "Red."]  # a wrong sum is used; repeating the reference is not
    pairs = build_preference_pairs([gsm, colour, {**colour, "output": "Blue."}], "sampled", seed=0,
                                   model_answers=answers + ["  "])
    assert pairs[0]["rejected"] == answers[0]
    outputs = {gsm["output"], "Red.", "Blue."}
    for pair in pairs[1:]:  # fell back to another row's answer
        assert pair["rejected"] in outputs - {pair["chosen"]}
    right_in_other_words = build_preference_pairs([gsm], "sampled", model_answers=["12 apples.\n#### 12"])[0]
    assert final_answer(right_in_other_words["rejected"]) not in (None, "12")  # fell back to a corrupted number
    with pytest.raises(ValueError, match="1 model answers for 2 rows"):
        build_preference_pairs([gsm, colour], "sampled", model_answers=["x"])

    sft = write_jsonl(tmp_path / "sft.jsonl", [gsm, colour, {"instruction": "Count from 1 to 4.", "output": "1, 2, 3, 4."}])
    out = tmp_path / "pairs.jsonl"
    argv = ["build-preferences", "--input_file", str(sft), "--output_file", str(out), "--rejected", "sampled",
            "--model_name_or_path", str(model_dir), "--max_new_tokens", "12"]
    refused(argv[:7], capsys, "--rejected sampled needs --model_name_or_path")
    refused(argv + ["--temperature", "0"], capsys, "--temperature > 0, got 12 and 0")
    assert main(argv) == 0
    assert re.search(r"3 pairs written .*\(3 rejected answers are the model's own", capsys.readouterr().out)
    pairs = read_preference_file(out)
    first = out.read_text()
    # the random model's answers: rendered in the chat template, so DPO scores exactly what the model said
    assert [p["chosen"][0]["content"] for p in pairs] == [gsm["output"], "Red.", "1, 2, 3, 4."]
    assert all(p["rejected"][0]["content"] != p["chosen"][0]["content"] for p in pairs)
    assert main(argv + ["--overwrite", "true"]) == 0 and out.read_text() == first  # seeded: the same samples
    assert main(argv + ["--overwrite", "true", "--seed", "1"]) == 0 and out.read_text() != first
