"""GRPO through TRL: rewards, the counting task, batched greedy answers equal one-at-a-time generation, a CLI run
that saves a model AutoModelForCausalLM (or PEFT) loads, and the errors for bad input."""

import json
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import scratchformers  # noqa: F401
from scratchformers.cli import main
from scratchformers.generation import generate_texts
from scratchformers.tokenization_scratch import train_tokenizer_from_iterator
from scratchformers.training.common import build_config
from scratchformers.generation import chat_answers, greedy_answers
from scratchformers.training.grpo import (
    exact_answer_reward,
    final_number_reward,
    heldout_rewards,
    make_counting_task,
    read_prompt_file,
    similarity_reward,
)
from scratchformers.training.synthetic import make_instruction_data, make_story_corpus


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    texts = make_story_corpus(120, seed=5) + [json.dumps(r) for r in make_instruction_data(100)]
    folder = tmp_path_factory.mktemp("grpo_model")
    tokenizer = train_tokenizer_from_iterator(texts, vocab_size=300, show_progress=False)
    tokenizer.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = build_config("llama2-tiny", tokenizer, "num_hidden_layers=2,hidden_size=64,num_attention_heads=4,"
                                                    "num_key_value_heads=2,intermediate_size=128,max_position_embeddings=128")
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def refused(argv, capsys, pattern: str):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err


def test_rewards_check_the_exact_answer_and_the_final_number():
    chat = [[{"role": "assistant", "content": " 3, 4, 5. "}], [{"role": "assistant", "content": "3, 4."}]]
    assert exact_answer_reward(chat, ["3, 4, 5.", "3, 4, 5."]) == [1.0, 0.0]
    assert final_number_reward(["so 2+3=5\n#### 5", "it is 1,250.", "no idea"], ["5", "1250", "7"]) == [1.0, 1.0, 0.0]
    assert final_number_reward(["#### 6"], ["5"]) == [0.0]
    close, far = similarity_reward(["3, 4, 6.", "hello"], ["3, 4, 5.", "3, 4, 5."])
    assert 0.8 < close < 1.0 and far < 0.3


def test_counting_task_prompts_are_different_and_answers_right():
    rows = make_counting_task(150, seed=3)
    assert len({r["prompt"] for r in rows}) == 150
    start, end = map(int, re.findall(r"\d+", rows[0]["prompt"]))
    assert rows[0]["answer"] == ", ".join(str(n) for n in range(start, end + 1)) + "."
    assert make_counting_task(10, seed=3) == rows[:10]  # a prefix: the held-out prompts follow the training ones
    with pytest.raises(ValueError, match="has 150 different prompts, 151 were asked for"):
        make_counting_task(151)


def test_sampled_held_out_scores_repeat_and_leave_the_callers_generator_alone(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [{"prompt": "Count from 1 to 3.", "answer": "1, 2, 3."}, {"prompt": "Count from 2 to 4.", "answer": "2, 3, 4."}]
    torch.manual_seed(5)
    first = heldout_rewards(model, tokenizer, rows, similarity_reward, 8, samples=4)
    after_first = torch.rand(1)
    torch.manual_seed(5)
    assert heldout_rewards(model, tokenizer, rows, similarity_reward, 8, samples=4) == first
    assert torch.equal(torch.rand(1), after_first)
    assert len(chat_answers(model, tokenizer, [r["prompt"] for r in rows], 8, samples=4)) == 8


def test_batched_greedy_answers_equal_one_at_a_time_generation(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = ["Count from 1 to 3.", "Count from 12 to 19.", "Write a story about Tom and a cat."]
    batched = greedy_answers(model, tokenizer, prompts, 12)
    single = [generate_texts(model, tokenizer, p, 12, chat=True, do_sample=False)[0].strip() for p in prompts]
    assert batched == single
    from scratchformers.generation import prompt_ids

    long = next("Count " * n for n in range(60, 0, -1) if len(prompt_ids(tokenizer, "Count " * n, True)[0]) < 124)
    assert len(prompt_ids(tokenizer, long, True)[0]) > 100  # 40 new tokens would run past the 128 positions
    assert all(isinstance(a, str) for a in greedy_answers(model, tokenizer, [long, "Hi."], 40))
    with pytest.raises(ValueError, match="leaves no room in the model's context"):
        greedy_answers(model, tokenizer, ["Count " * 200], 8)


@pytest.mark.parametrize("adapter", ["none", "peft", "hand"])
def test_grpo_cli_trains_and_saves_a_model_that_loads(model_dir, tmp_path, adapter):
    out = tmp_path / "grpo"
    code = main(["grpo", "--model_name_or_path", str(model_dir), "--task", "counting", "--num_prompts", "16",
                 "--num_eval_prompts", "4", "--output_dir", str(out), "--max_steps", "3", "--learning_rate", "1e-2",
                 "--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "8",
                 "--temperature", "1.5", "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1",
                 "--lora", adapter, "--lora_r", "4", "--save_strategy", "no", "--reward", "similarity",
                 "--eval_every_steps", "2"])
    assert code == 0
    results = json.loads((out / "all_results.json").read_text())
    assert results["global_step"] == 3 and 0 <= results["heldout_reward_after"] <= 1
    assert results["heldout_prompts"] == 4
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("reward" in entry for entry in history)
    curve = [e for e in history if "heldout_reward" in e]  # the held-out curves, every 2 steps
    assert [e["step"] for e in curve] == [2] and 0 <= curve[0]["heldout_reward_sampled"] <= 1
    assert results["heldout_samples"] == 8 and 0 <= results["heldout_reward_sampled_after"] <= 1
    ids = AutoTokenizer.from_pretrained(out)("Count from 1 to 3.", return_tensors="pt").input_ids
    if adapter == "peft":
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(out)
    else:
        model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    assert (model(ids).logits - base(ids).logits).abs().max() > 1e-5  # the policy gradient moved the weights


def test_grpo_reads_prompt_files_and_refuses_bad_input(model_dir, tmp_path, capsys):
    good = tmp_path / "prompts.jsonl"
    good.write_text('{"prompt": "Count from 1 to 3.", "answer": "1, 2, 3."}\n{"prompt": "Add 2 and 3.", "answer": 5}\n')
    assert read_prompt_file(good)[1] == {"prompt": "Add 2 and 3.", "answer": "5"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Count from 1 to 3.", "answer": "1, 2, 3."}\n{"prompt": "Add 2 and 3."}\n')
    common = ["--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    refused(["grpo", *common, "--train_file", str(bad)], capsys, r"bad.jsonl:2: .*missing \['answer'\]")
    refused(["grpo", *common], capsys, "exactly one of --train_file .* and --task")
    refused(["grpo", *common, "--task", "sorting"], capsys, "--task must be one of")
    refused(["grpo", *common, "--task", "counting", "--lora", "hand", "--beta", "0.1"], capsys,
            "--lora hand trains without a KL reference")


def test_grpo_time_budget_stops_training_and_decays_the_rate_with_the_time_spent(model_dir, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from scratchformers.training import budget as budget_module

    ticks = SimpleNamespace(now=0.0)

    def clock():  # the budget's clock moves 0.1 s per reading: the run stops at the same step on any machine
        ticks.now += 0.1
        return ticks.now

    monkeypatch.setattr(budget_module, "time", SimpleNamespace(perf_counter=clock))
    out = tmp_path / "grpo"
    assert main(["grpo", "--model_name_or_path", str(model_dir), "--task", "counting", "--num_prompts", "16",
                 "--num_eval_prompts", "2", "--eval_samples", "0", "--output_dir", str(out), "--time_budget", "8s",
                 "--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "6",
                 "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1", "--save_strategy", "no",
                 "--reward", "exact,similarity", "--learning_rate", "1e-3"]) == 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    steps = [e for e in history if "learning_rate" in e and "reward" in e]
    # 16 prompts x 4 answers are 8 steps an epoch: a budget runs as many epochs as fit, then stops
    assert 8 < len(steps) < 50
    assert steps[0]["learning_rate"] > steps[-1]["learning_rate"]  # cosine over the time spent
    assert "rewards/exact_answer_reward/mean" in steps[0] and "rewards/similarity_reward/mean" in steps[0]
