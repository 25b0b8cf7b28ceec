"""The LoRA comparison report script runs end to end on a tiny generated dataset (not on shared data)."""

import csv
import importlib.util
import json
import random
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "lora_report.py"


def load_script():
    spec = importlib.util.spec_from_file_location("lora_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_data(folder: Path):
    rng = random.Random(0)
    words = {0: ["bad", "dull", "awful", "差", "脏"], 1: ["good", "fun", "great", "好", "干净"]}
    for name in ("cls_en_sst2", "cls_zh_chnsenticorp"):
        for split, n in (("train", 40), ("test", 12)):
            with open(folder / f"{name}_{split}.csv", "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                for i in range(n):
                    label = i % 2
                    writer.writerow([" ".join(rng.choice(words[label]) for _ in range(6)), label])
                writer.writerow(["房价5元/小时，不值。", 0])  # one word with "/": text, not a file path
    for split, n in (("train", 40), ("test", 12)):
        with open(folder / f"sft_en_gsm8k_{split}.jsonl", "w", encoding="utf-8") as f:
            for i in range(n):
                a, b = rng.randint(1, 9), rng.randint(1, 9)
                f.write(json.dumps({"instruction": f"What is {a} plus {b}?", "input": "",
                                    "output": f"{a} + {b} = {a + b}\n#### {a + b}"}) + "\n")


def test_report_quick_run_writes_markdown_plots_and_matching_lora_curves(tmp_path):
    write_tiny_data(tmp_path)
    module = load_script()
    out = tmp_path / "report"
    result = module.main(["--quick", "--data-dir", str(tmp_path), "--out", str(out), "--families", "llama2",
                          "--tasks", "sft_en", "cls_zh", "--steps", "4", "--pretrain-steps", "2",
                          "--threads", "1"])
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "| llama2 | cls_zh | hand-rolled LoRA |" in text and "| llama2 | sft_en | PEFT LoRA |" in text
    for png in ("loss_curves.png", "trainable_params.png", "checkpoint_size.png", "step_time.png",
                "peak_memory.png", "accuracy.png"):
        assert (out / png).stat().st_size > 1000, png
    for task in ("sft_en", "cls_zh"):
        run = result["runs"]["llama2"][task]
        assert len(run["hand"]["losses"]) == 4
        assert run["peft_vs_hand_max_loss_diff"] < 1e-4
        assert run["hand_adapter_in_peft_max_abs_diff"] < 1e-5
        assert run["hand"]["trainable"] == run["peft"]["trainable"] < run["full"]["trainable"]
        assert run["hand"]["checkpoint_bytes"] < run["full"]["checkpoint_bytes"]
        assert run["hand"]["step_peak_bytes"] <= run["peft"]["step_peak_bytes"]
    assert 0.0 <= result["runs"]["llama2"]["cls_zh"]["hand"]["metric"] <= 1.0
    assert json.loads((out / "results.json").read_text())["tasks"] == ["sft_en", "cls_zh"]
    (out / "report.md").unlink()
    module.main(["--render-only", "--out", str(out)])
    assert (out / "report.md").read_text(encoding="utf-8") == text


def test_report_missing_data_file_names_the_path(tmp_path):
    module = load_script()
    with pytest.raises(FileNotFoundError, match="cls_en_sst2_train.csv"):
        module.main(["--quick", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--tasks", "cls_en"])


def test_report_bad_sft_line_names_file_and_line(tmp_path):
    module = load_script()
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"oops": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        module.read_sft(tmp_path / "bad.jsonl", 10, 0)
