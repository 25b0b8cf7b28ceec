"""Sequence-classification fine-tuning from CSV, for both families, with accuracy and label-set checks."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

import scratchformers  # noqa: F401
from scratchformers.tokenization_scratch import train_tokenizer_from_iterator
from scratchformers.training.arguments import ClassifyArguments
from scratchformers.training.classify import run_classify
from scratchformers.training.data import load_classification_csv

POSITIVE = ["a good happy day", "so good and fun", "happy happy fun", "a fun good film", "good good day"]
NEGATIVE = ["a bad sad day", "so bad and dull", "sad sad dull", "a dull bad film", "bad bad day"]
TINY = {
    "gpt-micro": "num_hidden_layers=2,hidden_size=64,num_attention_heads=2",
    "llama2-tiny": "num_hidden_layers=2,hidden_size=64,num_attention_heads=2,num_key_value_heads=1,intermediate_size=128",
}


def write_csv(path, rows):
    path.write_text("text,label\n" + "".join(f'"{text}",{label}\n' for text, label in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cls")
    rows = [(t, 1) for t in POSITIVE] + [(t, 0) for t in NEGATIVE]
    train_tokenizer_from_iterator(POSITIVE + NEGATIVE, vocab_size=280, show_progress=False).save_pretrained(folder / "tok")
    return {
        "tokenizer": folder / "tok",
        "train": write_csv(folder / "train.csv", rows * 4),
        "validation": write_csv(folder / "validation.csv", rows),
        "test": write_csv(folder / "test.csv", rows[::2]),
    }


@pytest.mark.parametrize("preset", ["gpt-micro", "llama2-tiny"])
def test_classify_reports_accuracy_and_saves_a_loadable_classifier(files, preset, tmp_path):
    out = tmp_path / preset
    args = TrainingArguments(
        output_dir=str(out), max_steps=6, per_device_train_batch_size=8, per_device_eval_batch_size=8,
        learning_rate=5e-3, eval_strategy="steps", eval_steps=6, save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, logging_steps=1, seed=0,
    )
    metrics = run_classify(
        ClassifyArguments(preset=preset, config_overrides=TINY[preset], tokenizer_name_or_path=str(files["tokenizer"]),
                          train_file=str(files["train"]), validation_file=str(files["validation"]),
                          test_file=str(files["test"])),
        args, verbose=False,
    )
    assert "test_accuracy" in metrics and metrics["labels"] == ["0", "1"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    # The reported accuracy is the share of validation rows the saved model gets right, one row at a time
    # (so batched evaluation with padding pooled the right token).
    rows = [(t, 1) for t in POSITIVE] + [(t, 0) for t in NEGATIVE]
    with torch.no_grad():
        right = [model(**tokenizer(text, return_tensors="pt")).logits.argmax(-1).item() == label for text, label in rows]
    assert metrics["eval_accuracy"] == pytest.approx(sum(right) / len(rows))
    assert type(model).__name__ == ("GPTForSequenceClassification" if preset == "gpt-micro"
                                    else "Llama2ForSequenceClassification")
    assert model.config.id2label == {0: "0", 1: "1"} and model.config.pad_token_id == 1
    assert json.loads((out / "all_results.json").read_text())["eval_accuracy"] == metrics["eval_accuracy"]


def test_label_outside_the_label_set_names_file_and_line(files, tmp_path):
    bad = write_csv(tmp_path / "bad.csv", [("fine", 1), ("odd", 2)])
    with pytest.raises(ValueError, match=r"bad.csv:3: label '2' is outside the label set \['0', '1'\]"):
        load_classification_csv({"train": str(files["train"]), "validation": str(bad)})
    with pytest.raises(ValueError, match=r"train.csv:\d+: label '0' is outside the label set \['1'\]"):
        load_classification_csv({"train": str(files["train"])}, labels=["1"])
    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("text\nhello\n")
    with pytest.raises(ValueError, match="nolabel.csv:1: no column 'label'"):
        load_classification_csv({"train": str(no_label)})
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_classification_csv({"train": str(tmp_path / "absent.csv")})
