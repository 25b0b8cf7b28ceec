"""SFT: chat-template rendering, the exact assistant-only loss mask, truncation, bad rows, a short run."""

import json
import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

import scratchformers  # noqa: F401
from scratchformers.tokenization_scratch import IM_END, train_tokenizer_from_iterator
from scratchformers.training.common import build_config
from scratchformers.training.data import SFTCollator, build_sft_dataset, read_sft_jsonl, tokenize_conversations
from scratchformers.training.arguments import SFTArguments
from scratchformers.training.sft import run_sft
from scratchformers.training.synthetic import make_instruction_data, make_story_corpus

CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Count from 2 to 4."},
    {"role": "assistant", "content": "2, 3, 4."},
    {"role": "user", "content": "Write a story about Tom and a cat."},
    {"role": "assistant", "content": "Tom had a red ball. The end."},
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = make_story_corpus(120, seed=5) + [json.dumps(r) for r in make_instruction_data(100)]
    folder = tmp_path_factory.mktemp("sft_tokenizer")
    train_tokenizer_from_iterator(texts, vocab_size=300, show_progress=False).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def test_labels_cover_exactly_each_assistant_reply_and_its_im_end(tokenizer):
    encoded = tokenize_conversations([CHAT], tokenizer, max_length=1000)
    ids, labels = encoded["input_ids"][0], encoded["labels"][0]
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    expected = [-100] * len(ids)
    for turn in (2, 4):
        # Everything up to and including the header "<|im_start|>assistant\n" is the prompt of this reply.
        prompt = tokenizer.apply_chat_template(CHAT[:turn], add_generation_prompt=True, tokenize=True)["input_ids"]
        reply = tokenizer(CHAT[turn]["content"], add_special_tokens=False)["input_ids"] + [im_end]
        assert ids[: len(prompt)] == prompt
        assert ids[len(prompt) : len(prompt) + len(reply)] == reply
        expected[len(prompt) : len(prompt) + len(reply)] = reply
        first, last = len(prompt), len(prompt) + len(reply) - 1
        assert labels[first - 1] == -100  # the header's newline is not trained on ...
        assert labels[first] == ids[first] == reply[0]  # ... the reply's first token is
        assert labels[last] == im_end  # ... and so is the closing <|im_end|> (the model learns to stop)
        assert labels[last + 1] == -100  # the newline after <|im_end|> is not
    assert labels == expected
    assert tokenizer.decode([t for t in labels if t != -100]) == f"2, 3, 4.{IM_END}Tom had a red ball. The end.{IM_END}"


def test_truncation_drops_samples_without_trainable_tokens_and_counts_them(tokenizer, caplog):
    long_prompt = [{"role": "user", "content": "Tom had a ball. " * 40}, {"role": "assistant", "content": "Yes."}]
    fits = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Tom had a red ball. " * 10}]
    with caplog.at_level(logging.WARNING, logger="scratchformers.training.data"):
        dataset = build_sft_dataset([long_prompt, fits, long_prompt], tokenizer, max_length=24, source="toy.jsonl")
    assert "toy.jsonl: dropped 2 of 3 samples" in caplog.text
    assert len(dataset) == 1
    row = dataset[0]
    assert len(row["input_ids"]) == 24  # the kept sample is truncated inside its answer ...
    assert any(label != -100 for label in row["labels"])  # ... and still has trainable tokens
    with pytest.raises(ValueError, match="every sample was truncated away"):
        build_sft_dataset([long_prompt], tokenizer, max_length=24)


def test_sft_jsonl_accepts_both_formats_and_names_file_and_line_of_bad_rows(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"instruction": "Add", "input": "2 and 3", "output": "5"}) + "\n\n"
        + json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
        + "\n",
        encoding="utf-8",
    )
    conversations = read_sft_jsonl(good)
    assert conversations[0] == [{"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]
    assert conversations[1][1] == {"role": "assistant", "content": "Hello"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n" + json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*missing \['output'\]"):
        read_sft_jsonl(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n{not json\n')
    with pytest.raises(ValueError, match="broken.jsonl:2: not valid JSON"):
        read_sft_jsonl(broken)
    no_answer = tmp_path / "no_answer.jsonl"
    no_answer.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n")
    with pytest.raises(ValueError, match="no_answer.jsonl:1: .*no non-empty assistant turn"):
        read_sft_jsonl(no_answer)
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        read_sft_jsonl(tmp_path / "nothere.jsonl")


def test_collator_pads_labels_with_minus_100(tokenizer):
    batch = SFTCollator(tokenizer.pad_token_id)(
        [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
         {"input_ids": [8], "attention_mask": [1], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, tokenizer.pad_token_id, tokenizer.pad_token_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_sft_run_trains_on_assistant_tokens_and_saves_a_chat_model(tokenizer, tmp_path):
    base = tmp_path / "base"
    config = build_config("llama2-tiny", tokenizer, "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,"
                                                    "num_key_value_heads=1,intermediate_size=128")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_instruction_data(60, seed=2)), encoding="utf-8")
    out = tmp_path / "sft"
    args = TrainingArguments(
        output_dir=str(out), max_steps=4, per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=1,
        eval_strategy="steps", eval_steps=4, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    )
    metrics = run_sft(SFTArguments(model_name_or_path=str(base), train_file=str(data), max_length=96,
                                   sample_prompts=["Count from 1 to 3."], sample_max_new_tokens=5), args)
    assert metrics["global_step"] == 4 and "eval_loss" in metrics
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert losses[-1] < losses[0]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).chat_template == tokenizer.chat_template
    assert type(model).__name__ == "Llama2ForCausalLM"
