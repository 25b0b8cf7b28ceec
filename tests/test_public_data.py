"""`scratchformers fetch-data`: upstream files become our formats exactly as ../shared/data's copies were made
(GSM8K rows, SST-2 with PTB escapes undone, ChnSentiCorp split 80/10/10 by label, 红楼梦 stripped), files already there
are kept, and bad upstream records or a missing server are clear errors. Downloads come from a local server."""

import csv
import json

import pytest
from conftest import serve_upstream

from scratchformers.cli import main
from scratchformers.training.public_data import DATASETS, fetch_data


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_each_set_is_converted_as_the_shared_copies_were(http_folder, tmp_path):
    served, url = http_folder
    serve_upstream(served, "gsm8k", ['{"question": " Two plus two? ", "answer": "2+2=<<2+2=4>>4\\n#### 4\\n"}\r\n',
                            '{"question": "Three?", "answer": "#### 3"}\n'])
    serve_upstream(served, "sst2", ["1 a -lrb- good -rrb- film , 1\\/2 \\* star\n0 does n't work\n", "1 fine\n", "0 bad\n"])
    rows = ["label,review"] + [f"{i % 2},\"好 评  {i}\"" for i in range(20)] + ["1,\"好 评  0\"", "0,"]
    serve_upstream(served, "chnsenticorp", ["\n".join(rows) + "\n"])
    serve_upstream(served, "hongloumeng", ["\u3000\u3000第一回 甄士隐\r\n\r\n  满纸荒唐言  \n"])
    written, kept = fetch_data(list(DATASETS), tmp_path, base_url=url)
    assert kept == []
    assert [p.name for p in written] == [f for d in DATASETS.values() for f in d.outputs]

    gsm = [json.loads(line) for line in (tmp_path / "sft_en_gsm8k_train.jsonl").read_text("utf-8").splitlines()]
    assert gsm == [{"instruction": "Two plus two?", "input": "", "output": "2+2=<<2+2=4>>4\n#### 4"}]
    assert read_csv(tmp_path / "cls_en_sst2_train.csv") == [
        ["text", "label"], ["a ( good ) film , 1/2 * star", "1"], ["does n't work", "0"]]
    assert read_csv(tmp_path / "cls_en_sst2_validation.csv")[1:] == [["fine", "1"]]
    splits = [read_csv(tmp_path / f"cls_zh_chnsenticorp_{s}.csv")[1:] for s in ("train", "validation", "test")]
    assert [len(s) for s in splits] == [16, 2, 2]  # 20 distinct reviews (a duplicate and an empty one dropped)
    for split in splits:
        assert sorted(label for _, label in split).count("1") == len(split) // 2  # each label's share kept
    assert {text for split in splits for text, _ in split} == {f"好 评 {i}" for i in range(20)}
    assert (tmp_path / "zh_hongloumeng.txt").read_bytes() == "第一回 甄士隐\n满纸荒唐言\n".encode()


def test_files_there_are_kept_and_errors_name_the_problem(http_folder, tmp_path, capsys):
    served, url = http_folder
    serve_upstream(served, "hongloumeng", ["满纸荒唐言\n"])
    out = tmp_path / "data"
    argv = ["fetch-data", "hongloumeng", "--output_dir", str(out), "--base_url", url]
    assert main(argv) == 0
    (out / "zh_hongloumeng.txt").write_text("my own edits\n", encoding="utf-8")
    assert main(argv) == 0 and "kept" in capsys.readouterr().out
    assert (out / "zh_hongloumeng.txt").read_text("utf-8") == "my own edits\n"  # never replaced silently
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "zh_hongloumeng.txt").read_text("utf-8") == "满纸荒唐言\n"

    serve_upstream(served, "sst2", ["1 fine\n", "2 what\n", "0 bad\n"])
    assert main(["fetch-data", "sst2", "--output_dir", str(out), "--base_url", url]) == 2
    assert "stsa.binary.dev:1: expected '0 sentence' or '1 sentence'" in capsys.readouterr().err
    (out / "cls_en_sst2_train.csv").write_text("text,label\n", encoding="utf-8")  # only some of the set's files
    with pytest.raises(FileExistsError, match="not the rest of sst2"):
        fetch_data(["sst2"], out, base_url=url)
    with pytest.raises(ValueError, match=r"among gsm8k, sst2, chnsenticorp, hongloumeng; got \['imdb'\]"):
        fetch_data(["imdb"], out)
    assert main(["fetch-data", "gsm8k", "--output_dir", str(tmp_path / "none"), "--base_url", "http://127.0.0.1:1"]) == 2
    assert "give a mirror of raw.githubusercontent.com with --base_url" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()  # nothing made when nothing was downloaded
