"""Reading data files: one layer for tokenizer training, pretraining, SFT and classification.

Every job reads its files through `load_records` (all columns) or `load_texts` (one text column), built on the
`datasets` loaders: `.txt`/`.text`/`.md` (and any other suffix) as text, `.jsonl`/`.json` as JSON, `.csv`/`.tsv` as
CSV, `.parquet`, a folder of such files, or a folder written by `Dataset.save_to_disk`. The text of a record is
chosen the same way everywhere (`select_text`). Bad input is an error that names the file, and the line where there
is one: a missing file, an empty corpus, a line that is not UTF-8 or not JSON, a record without the needed field.
读取数据文件的统一入口：分词器训练、预训练、SFT 与分类都经由这里，错误信息指明文件与行号。
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets

BUILDERS = {
    ".txt": "text", ".text": "text", ".md": "text",
    ".jsonl": "json", ".json": "json",
    ".csv": "csv", ".tsv": "csv",
    ".parquet": "parquet",
}
SPLIT_BY = ("paragraph", "line", "document")
SFT_FIELDS = ("instruction", "input", "output")


def expand_files(paths) -> list[Path]:
    """The files named by `paths` (a path or a list of paths); a folder gives its data files, sorted by name.

    A folder written by `Dataset.save_to_disk` stays one entry. Strings are always paths: a missing one raises
    FileNotFoundError naming it (texts in memory go to `train_tokenizer_from_iterator`, not here).
    """
    if paths is None:
        return []
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for item in paths:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"a data file must be a path (str or pathlib.Path), got {type(item).__name__}: {item!r:.60}")
        path = Path(item).expanduser()
        try:
            exists = path.exists()
        except OSError:  # e.g. a whole text where a file name belongs: too long to be a name
            exists = False
        if not exists:
            text_like = isinstance(item, str) and (len(item) > 200 or "\n" in item)
            hint = " (it looks like a text: train_tokenizer_from_iterator takes texts in memory)" if text_like else ""
            raise FileNotFoundError(f"data file not found: {str(item)[:120]}{hint}")
        if path.is_dir() and not _is_saved_dataset(path):
            inside = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in BUILDERS)
            if not inside:
                raise ValueError(
                    f"{path} is a folder with no data files ({', '.join(sorted(BUILDERS))}) and not a `save_to_disk` "
                    "dataset"
                )
            files.extend(inside)
        else:
            files.append(path)
    return files


def _is_saved_dataset(path: Path) -> bool:
    return any((path / name).is_file() for name in ("dataset_dict.json", "state.json", "dataset_info.json"))


def _builder(path: Path) -> tuple[str, dict]:
    builder = BUILDERS.get(path.suffix.lower(), "text")
    kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    return builder, kwargs


def _locate_bad_line(path: Path, builder: str) -> str | None:
    """Where a text/JSON/CSV file that `datasets` could not read goes wrong: `file:line: reason`, or None."""
    if builder == "parquet":
        return None
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                return f"{path}:{number}: not UTF-8 text ({error.reason} at byte {error.start + 1} of the line)"
            if builder == "json" and path.suffix.lower() == ".jsonl" and line.strip():
                try:
                    json.loads(line)
                except json.JSONDecodeError as error:
                    return f"{path}:{number}: not valid JSON ({error.msg})"
    return None


def load_file(path: Path, split_by: str = "paragraph") -> datasets.Dataset:
    """One file (or `save_to_disk` folder) as a Dataset with all its columns; a text file has the column "text"."""
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if "train" not in loaded:
                raise ValueError(f"{path}: saved DatasetDict has no 'train' split (splits: {list(loaded)})")
            loaded = loaded["train"]
        return loaded
    builder, kwargs = _builder(path)
    if builder == "text":
        if split_by not in SPLIT_BY:
            raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
        kwargs = {"sample_by": split_by, "keep_linebreaks": True}
    if path.stat().st_size == 0:
        raise ValueError(f"empty corpus: {path} is an empty file")
    try:
        return datasets.load_dataset(builder, data_files=[str(path)], split="train", **kwargs)
    except Exception as error:  # datasets/pyarrow errors say little about where: find the line ourselves
        where = _locate_bad_line(path, builder)
        if where is None:
            raise ValueError(f"{path}: could not be read as {builder} ({type(error).__name__}: {error})") from error
        raise ValueError(where) from None


def load_records(paths, split_by: str = "paragraph") -> list[tuple[Path, datasets.Dataset]]:
    """(file, its records with all columns) for every file of `paths`, so errors can name the file and line."""
    files = expand_files(paths)
    if not files:
        raise ValueError("no data files given")
    return [(path, load_file(path, split_by)) for path in files]


def line_of_record(path, index: int) -> str:
    """`file:line` of the index-th record (JSONL: non-blank lines; CSV/TSV: after the header; else: item N)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return f"{path}:{index + 2}"
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            lines = (number for number, line in enumerate(f, start=1) if line.strip())
            for _ in range(index):
                next(lines, None)
            return f"{path}:{next(lines, '?')}"
    return f"{path}: record {index + 1}"


def _record_text(record: dict, text_column: str) -> str | None:
    if text_column in record:
        return record[text_column]
    if all(key in record for key in ("instruction", "output")):
        return "\n".join(str(record[key]) for key in SFT_FIELDS if record.get(key))
    messages = record.get("messages")
    if isinstance(messages, list):
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    return None


def select_text(records: datasets.Dataset, text_column: str = "text", source="the data") -> datasets.Dataset:
    """The text of each record as a Dataset with one column "text": the column `text_column`, else the SFT fields
    instruction/input/output joined by newlines, else the contents of chat `messages`. A record without text is an
    error naming `source` (its file) and line; empty texts are dropped."""
    columns = records.column_names
    has_sft = "instruction" in columns and "output" in columns
    if text_column not in columns and not has_sft and "messages" not in columns:
        raise ValueError(f"{source}: no column {text_column!r} (columns: {columns}); set --text_column")

    def pick(batch, indices):
        texts = []
        for offset, index in enumerate(indices):
            record = {key: batch[key][offset] for key in batch}
            text = _record_text(record, text_column)
            if not isinstance(text, str):
                found = sorted(k for k, v in record.items() if v is not None)
                raise ValueError(
                    f"{line_of_record(source, index)}: row has no {text_column!r} value (fields with values: {found})"
                )
            texts.append(text)
        return {"text": texts}

    features = datasets.Features({"text": datasets.Value("string")})  # one type, so that files concatenate
    texts = records.map(pick, batched=True, with_indices=True, remove_columns=columns, features=features,
                        desc="Selecting the text")
    return texts.filter(lambda batch: [bool(t.strip()) for t in batch["text"]], batched=True)


def load_texts(paths, text_column: str = "text", split_by: str = "paragraph") -> datasets.Dataset:
    """The texts of `paths` as a Dataset with one column "text" (see `select_text`); empty corpora are an error.

    `.txt` files give one record per blank-line separated paragraph (`split_by="paragraph"`), per line (`"line"`)
    or per file (`"document"`). 读取文本：每条记录一段（或一行、一整个文件），只保留文本列。
    """
    files = expand_files(paths)
    if not files:
        raise ValueError("no training data given: pass --train_files (txt/jsonl/json/csv/tsv/parquet files or folders)")
    parts = [select_text(records, text_column, source=path) for path, records in load_records(files, split_by)]
    texts = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(texts) == 0:
        raise ValueError(f"empty corpus: no non-empty text in {', '.join(map(str, files))}")
    return texts
