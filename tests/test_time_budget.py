"""Training for a wall-clock budget: duration parsing, stop time, time-driven LR schedule, resume, nats per char."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainingArguments

import scratchformers  # noqa: F401  (registers the Auto classes)
from scratchformers.tokenization_scratch import train_tokenizer
from scratchformers.training import budget as budget_module
from scratchformers.training.arguments import ModelArguments, PretrainDataArguments
from scratchformers.training.budget import TimeBudget, parse_duration, time_budget_scheduler
from scratchformers.training.common import nats_per_character, parse_reference_point
from scratchformers.training.data import split_text_file
from scratchformers.training.pretrain import run_pretrain
from scratchformers.training.synthetic import make_story_corpus

TINY_LLAMA = "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,num_key_value_heads=1,intermediate_size=128"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("budget_corpus")
    stories = make_story_corpus(200, seed=5)
    (folder / "train.txt").write_text("\n\n".join(stories[20:]) + "\n", encoding="utf-8")
    (folder / "valid.txt").write_text("\n\n".join(stories[:20]) + "\n", encoding="utf-8")
    train_tokenizer([folder / "train.txt"], vocab_size=300, show_progress=False).save_pretrained(folder / "tokenizer")
    return folder


def budget_args(output_dir, **overrides):
    kwargs = dict(
        output_dir=str(output_dir), per_device_train_batch_size=4, per_device_eval_batch_size=8, learning_rate=3e-3,
        lr_scheduler_type="cosine", warmup_steps=0.1, logging_steps=1, eval_strategy="no", save_strategy="no",
        report_to=[], use_cpu=True, seed=3, disable_tqdm=True,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def run_budgeted(corpus, output_dir, time_budget, **training):
    return run_pretrain(
        ModelArguments(preset="llama2-tiny", config_overrides=TINY_LLAMA, tokenizer_name_or_path=str(corpus / "tokenizer")),
        PretrainDataArguments(
            train_files=[str(corpus / "train.txt")], validation_files=[str(corpus / "valid.txt")], block_size=32,
            time_budget=time_budget, sample_max_new_tokens=8, overwrite=True,
        ),
        budget_args(output_dir, **training),
        verbose=False,
    )


@pytest.mark.parametrize("text, seconds", [("120s", 120), ("2m", 120), ("10m", 600), ("1h", 3600), ("1h30m", 5400),
                                           ("90", 90), ("2.5m", 150), (45, 45)])
def test_durations_read_seconds_minutes_and_hours(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10 minutes", "5x", "", "0s", "-3m", "m"])
def test_a_bad_duration_is_an_error_that_names_it(text):
    with pytest.raises(ValueError, match="time budget"):
        parse_duration(text)


class FakeClock:
    """`perf_counter` for the budget's code: set by hand (`now`), or moving `tick` seconds each time it is read. The
    budget reads it the same number of times every step, so with a tick a run stops at the same step on a busy or an
    idle machine (the wall clock made a test fail about one run in five on shared CI machines)."""

    def __init__(self, tick: float = 0.0):
        self.now, self.tick = 100.0, tick

    def __call__(self):
        self.now += self.tick
        return self.now


def test_the_learning_rate_follows_the_time_spent_not_the_steps(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    budget = TimeBudget(100.0)
    budget.on_train_begin(None, type("S", (), {"stateful_callbacks": {}, "global_step": 0})(), None)
    optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=1.0)
    scheduler = time_budget_scheduler(optimizer, budget, "cosine", warmup=0.1)
    rates = {}
    for seconds in (0, 5, 10, 55, 99.9):
        clock.now = 100.0 + seconds
        optimizer.step()
        scheduler.step()
        rates[seconds] = scheduler.get_last_lr()[0]
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.5)  # linear warmup over the first 10 s
    assert rates[10] == pytest.approx(1.0)
    assert rates[55] == pytest.approx(0.5, abs=1e-3)  # halfway through the cosine decay
    assert rates[99.9] == pytest.approx(0.0, abs=1e-4)


def test_fractions_of_the_budget_are_required_where_steps_are_unknown():
    optimizer = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="warmup_steps is a fraction of the budget"):
        time_budget_scheduler(optimizer, TimeBudget(10), "cosine", warmup=100)
    with pytest.raises(ValueError, match="num_decay_steps"):
        time_budget_scheduler(optimizer, TimeBudget(10), "warmup_stable_decay", 0.1, {"num_decay_steps": 500})
    wsd = time_budget_scheduler(optimizer, TimeBudget(10), "warmup_stable_decay", 0.1, {"num_decay_steps": 0.3})
    assert wsd.get_last_lr()[0] == 0.0


def test_a_few_second_budget_stops_in_time_ends_at_the_floor_and_saves_a_loadable_model(corpus, tmp_path,
                                                                                        monkeypatch):
    # the budget's own `time` module, not the real one: Trainer and the data loaders keep the wall clock
    monkeypatch.setattr(budget_module, "time", SimpleNamespace(perf_counter=FakeClock(tick=0.02)))
    out = tmp_path / "run"
    metrics = run_budgeted(corpus, out, "4s")
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    step_logs = [entry for entry in log if "loss" in entry]
    assert len(step_logs) == metrics["global_step"] > 5
    # each log carries the time spent; the last step ends within the budget plus one step
    times = [entry["elapsed_seconds"] for entry in step_logs]
    assert times == sorted(times)
    longest_step = max(b - a for a, b in zip(times, times[1:]))
    assert metrics["train_wall_seconds"] <= 4.0 + longest_step
    assert metrics["final_learning_rate"] == 0.0  # cosine's floor
    assert step_logs[-1]["learning_rate"] < 0.2 * 3e-3 < max(e["learning_rate"] for e in step_logs)
    # the same run again stops at the same step: the stop follows the budget's clock, nothing else
    again = run_budgeted(corpus, tmp_path / "again", "4s")
    assert again["global_step"] == metrics["global_step"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.max_position_embeddings == 32
    assert metrics["eval_nats_per_char"] > 0 and (out / "loss_vs_time.png").is_file() and (out / "samples.txt").is_file()


def test_resume_continues_the_clock_of_the_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    run_budgeted(corpus, out, "10m", max_steps=4, save_strategy="steps", save_steps=4)
    saved = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["stateful_callbacks"]["TimeBudget"]
    spent = saved["attributes"]["elapsed_before"]
    assert spent > 0
    run_budgeted(corpus, out, "10m", max_steps=6, resume_from_checkpoint=str(out / "checkpoint-4"))
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    resumed = [entry for entry in log if "loss" in entry and entry["step"] > 4]
    assert resumed and all(entry["elapsed_seconds"] > spent for entry in resumed)


def test_interval_fractions_are_refused_with_a_time_budget(corpus, tmp_path):
    with pytest.raises(ValueError, match="--eval_steps 0.5 is a fraction"):
        run_budgeted(corpus, tmp_path / "run", "5s", eval_strategy="steps", eval_steps=0.5)


def test_nats_per_character_of_a_uniform_model_is_log_vocab_on_ascii_bytes(byte_tokenizer):
    config = scratchformers.Llama2Config(vocab_size=len(byte_tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16)
    model = scratchformers.Llama2ForCausalLM(config).eval()
    torch.nn.init.zeros_(model.lm_head.weight)  # every next-token distribution is uniform
    text = "To be, or not to be: that is the question. " * 3
    scored = nats_per_character(model, byte_tokenizer, text, batch_size=3)
    assert scored["tokens"] == scored["characters"] == len(text)  # one byte token per ASCII character
    assert scored["nats_per_char"] == pytest.approx(math.log(len(byte_tokenizer)), rel=1e-6)
    assert scored["context"] == 16


def test_nats_per_character_windows_equal_one_pass_when_the_context_is_long(byte_tokenizer):
    torch.manual_seed(0)
    config = scratchformers.Llama2Config(vocab_size=len(byte_tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64)
    model = scratchformers.Llama2ForCausalLM(config).eval()
    docs = ["Tom had a red ball.", "Mia saw a frog by the pond."]
    ids = [byte_tokenizer.eos_token_id]
    for doc in docs:
        ids += byte_tokenizer(doc, add_special_tokens=False)["input_ids"] + [byte_tokenizer.eos_token_id]
    ids = torch.tensor([ids[:-1]])  # the last document has no separator after it
    with torch.no_grad():
        nats = model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
    scored = nats_per_character(model, byte_tokenizer, docs)
    assert scored["characters"] == len(docs[0]) + len(docs[1]) + 1  # the separator counts as one character
    assert scored["nats_per_char"] == pytest.approx(nats / scored["characters"], rel=1e-5)
    windowed = nats_per_character(model, byte_tokenizer, docs, context=8)  # 6 windows, less context each
    assert windowed["nats_per_char"] != pytest.approx(scored["nats_per_char"], rel=1e-6)


def test_nats_per_character_of_an_ensemble_is_the_loss_of_the_mean_probability(byte_tokenizer):
    torch.manual_seed(0)
    size = dict(vocab_size=len(byte_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2)
    config = scratchformers.Llama2Config(**size, max_position_embeddings=64)
    a, b = scratchformers.Llama2ForCausalLM(config).eval(), scratchformers.Llama2ForCausalLM(config).eval()
    text = "To be, or not to be: that is the question."  # one window: 43 tokens < 64
    ids = torch.tensor([[byte_tokenizer.eos_token_id] + byte_tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        probs = [m(input_ids=ids[:, :-1]).logits.softmax(-1)[0] for m in (a, b)]  # (T, V) each
    targets = ids[0, 1:]
    by_hand = -((probs[0] + probs[1]) / 2)[torch.arange(len(targets)), targets].log().sum().item() / len(text)

    single = [nats_per_character(m, byte_tokenizer, text)["nats_per_char"] for m in (a, b)]
    ensemble = nats_per_character([a, b], byte_tokenizer, text, batch_size=1)
    assert ensemble["nats_per_char"] == pytest.approx(by_hand, rel=1e-5)
    assert ensemble["nats_per_char"] < sum(single) / 2  # a mixture scores better than its members' mean
    assert nats_per_character([a], byte_tokenizer, text)["nats_per_char"] == pytest.approx(single[0], rel=1e-6)
    assert nats_per_character([a, a], byte_tokenizer, text)["nats_per_char"] == pytest.approx(single[0], rel=1e-6)

    shorter = scratchformers.Llama2ForCausalLM(scratchformers.Llama2Config(**size, max_position_embeddings=32))
    with pytest.raises(ValueError, match=r"different contexts \[32, 64\]"):
        nats_per_character([a, shorter], byte_tokenizer, text)
    assert nats_per_character([a, shorter], byte_tokenizer, text, context=32)["context"] == 32
    wider_config = scratchformers.Llama2Config(**{**size, "vocab_size": len(byte_tokenizer) + 8},
                                               max_position_embeddings=64)
    wider = scratchformers.Llama2ForCausalLM(wider_config)
    with pytest.raises(ValueError, match="an ensemble needs one vocabulary"):
        nats_per_character([a, wider], byte_tokenizer, text)
    with pytest.raises(ValueError, match="context must be a positive number of tokens, got 0"):
        nats_per_character(a, byte_tokenizer, text, context=0)


def test_split_text_reads_an_http_url_and_names_it_when_the_download_fails(tmp_path, http_folder):
    folder, url = http_folder
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20
    (folder / "input.txt").write_text(text, encoding="utf-8")
    train, validation = split_text_file(f"{url}/input.txt", tmp_path / "split", 10)
    assert train.read_text(encoding="utf-8") + validation.read_text(encoding="utf-8") == text
    with pytest.raises(ConnectionError, match=r"could not download .*/missing.txt: HTTP 404"):
        split_text_file(f"{url}/missing.txt", tmp_path / "other", 10)
    (folder / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt: not UTF-8"):
        split_text_file(f"{url}/latin1.txt", tmp_path / "other", 10)
    with pytest.raises(ConnectionError, match=r"could not download http://127.0.0.1:9/x.txt: .*pass its path"):
        split_text_file("http://127.0.0.1:9/x.txt", tmp_path / "other", 10)
    assert not (tmp_path / "other").exists()


def test_reference_points_read_label_time_and_value():
    assert parse_reference_point("nanoGPT baby GPT (CPU)@1m35s=1.886") == ("nanoGPT baby GPT (CPU)", 95.0, 1.886)
    with pytest.raises(ValueError, match="LABEL@TIME=NATS_PER_CHAR"):
        parse_reference_point("nanoGPT=1.5")


def test_split_text_cuts_at_the_character_position_and_keeps_existing_files(tmp_path):
    source = tmp_path / "all.txt"
    text = "红楼梦" * 30 + "abcdefghij" * 7  # 160 characters
    source.write_text(text, encoding="utf-8")
    train, validation = split_text_file(source, tmp_path / "split", 10)
    assert train.read_text(encoding="utf-8") == text[:144] and validation.read_text(encoding="utf-8") == text[144:]
    with pytest.raises(FileExistsError, match="--overwrite"):
        split_text_file(source, tmp_path / "split", 20)
    assert validation.read_text(encoding="utf-8") == text[144:]
    with pytest.raises(ValueError, match="between 0 and 100"):
        split_text_file(source, tmp_path / "other", 100)
