"""Byte-level BPE tokenizer training, wrapped as a Hugging Face fast tokenizer.

The recipe is GPT-2's: text is turned into UTF-8 bytes, each byte is shown as one printable character
(`ByteLevel` pre-tokenizer), and BPE learns merges on top of the 256 byte symbols. Because every byte is in the
vocabulary from the start there is no `<unk>`: any Unicode string round-trips exactly through encode/decode.

The result is a `PreTrainedTokenizerFast` (`TokenizersBackend` in transformers 5) with a ChatML chat template, so
`save_pretrained(folder)` writes `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja`, and
`AutoTokenizer.from_pretrained(folder)` loads it back.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, IM_START, IM_END]  # ids 0..3, in this order

# ChatML. The assistant's content and its closing <|im_end|> sit inside {% generation %} so that
# apply_chat_template(..., return_assistant_tokens_mask=True, return_dict=True) marks exactly the tokens an SFT
# loss should train on: the model must learn to answer AND to stop.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

TEXT_SUFFIXES = {".txt", ".text", ".md"}
JSON_SUFFIXES = {".jsonl", ".json"}
CSV_SUFFIXES = {".csv", ".tsv"}
KNOWN_SUFFIXES = TEXT_SUFFIXES | JSON_SUFFIXES | CSV_SUFFIXES
SFT_FIELDS = ("instruction", "input", "output")
_LINES_PER_CHUNK = 256  # text files are fed to BPE in chunks of lines so that runs like "\n\n" are learned too


def _is_path_like(item) -> bool:
    """A list element is a file when it is a Path, names an existing file, or is one word with a corpus suffix.

    A "/" alone does not make a path: Chinese text has no spaces and may hold one ("5元/小时").
    """
    if isinstance(item, os.PathLike):
        return True
    if not isinstance(item, str) or not item or "\n" in item or len(item) > 4096:
        return False
    if os.path.isfile(item) or os.path.isdir(item):
        return True
    one_word = not any(c.isspace() for c in item)
    return one_word and Path(item).suffix.lower() in KNOWN_SUFFIXES


def _record_text(record, text_column: str, where: str) -> str:
    """The text of one JSON record: `text_column`, else instruction/input/output, else chat `messages`."""
    if isinstance(record, str):
        return record
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if text_column in record:
        value = record[text_column]
        if not isinstance(value, str):
            raise ValueError(f"{where}: field {text_column!r} must be a string, got {type(value).__name__}")
        return value
    if "instruction" in record and "output" in record:
        return "\n".join(str(record[key]) for key in SFT_FIELDS if record.get(key))
    if isinstance(record.get("messages"), list):
        return "\n".join(str(m.get("content", "")) for m in record["messages"] if isinstance(m, dict))
    raise ValueError(
        f"{where}: record has none of the fields {text_column!r}, instruction+output, or messages "
        f"(found: {sorted(record)})"
    )


def _utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line with its line ending) of a UTF-8 file; a bad byte raises ValueError naming file:line."""
    with path.open("rb") as f:
        for line_number, raw in enumerate(f, start=1):
            try:
                yield line_number, raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                reason = f"{error.reason} at byte {error.start + 1} of the line"
                raise ValueError(f"{path}:{line_number}: not UTF-8 text ({reason})") from None


def _read_text_file(path: Path) -> Iterator[str]:
    chunk = []
    for _, line in _utf8_lines(path):
        chunk.append(line)
        if len(chunk) == _LINES_PER_CHUNK:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def _read_jsonl_file(path: Path, text_column: str) -> Iterator[str]:
    for line_number, line in _utf8_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
        yield _record_text(record, text_column, f"{path}:{line_number}")


def _read_json_file(path: Path, text_column: str) -> Iterator[str]:
    """A .json file holds either one JSON list of records or, as many datasets do, JSON lines."""
    try:
        data = json.loads("".join(line for _, line in _utf8_lines(path)))
    except json.JSONDecodeError:
        yield from _read_jsonl_file(path, text_column)
        return
    if not isinstance(data, list):
        yield _record_text(data, text_column, f"{path}:1")
        return
    for index, record in enumerate(data):
        yield _record_text(record, text_column, f"{path}: item {index}")


def _read_csv_file(path: Path, text_column: str) -> Iterator[str]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            if reader.fieldnames is None or text_column not in reader.fieldnames:
                columns = reader.fieldnames
                raise ValueError(f"{path}:1: no column {text_column!r} in the header (columns: {columns})")
            for row in reader:
                if row[text_column] is None:
                    raise ValueError(f"{path}:{reader.line_num}: row has no value for column {text_column!r}")
                yield row[text_column]
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error.reason}) after line {reader.line_num}") from None


def _read_file(path: str | os.PathLike, text_column: str) -> Iterator[str]:
    path = Path(path)
    if path.is_dir():
        if not any((path / name).is_file() for name in ("dataset_dict.json", "state.json")):
            raise ValueError(f"{path} is a folder but not a `save_to_disk` dataset: pass the files in it instead")
        import datasets

        yield from _read_dataset(datasets.load_from_disk(str(path)), text_column)
        return
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _read_jsonl_file(path, text_column)
    elif suffix == ".json":
        yield from _read_json_file(path, text_column)
    elif suffix in CSV_SUFFIXES:
        yield from _read_csv_file(path, text_column)
    else:
        yield from _read_text_file(path)


def _is_dataset(source) -> bool:
    import datasets

    return isinstance(
        source, (datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict, datasets.IterableDatasetDict)
    )


def _read_dataset(dataset, text_column: str) -> Iterator[str]:
    import datasets

    splits = [dataset]
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        splits = [dataset["train"]] if "train" in dataset else list(dataset.values())
    for split in splits:
        columns = split.column_names
        if columns is not None and text_column not in columns:
            raise ValueError(f"dataset has no column {text_column!r} (columns: {columns})")
        for batch in split.iter(batch_size=1000):
            yield from (text for text in batch[text_column] if text is not None)


def iter_texts(source, text_column: str = "text") -> Iterator[str]:
    """Yield the texts of `source`: a path, a list of paths, a `datasets` Dataset/DatasetDict, or strings.

    Files: `.txt` (and any unknown suffix) in chunks of lines, line endings kept; `.jsonl`/`.json` the field
    `text_column`, else instruction/input/output joined by newlines, else the contents of `messages`; `.csv`/`.tsv`
    the column `text_column`; a folder written by `Dataset.save_to_disk`. A DatasetDict gives its "train" split
    (all splits when there is none). In a list or tuple an element is read as a file when it is a `pathlib.Path`,
    names an existing file or folder, or is a string without whitespace that ends in a known suffix (so a missing
    "data/corpus.txt" raises FileNotFoundError; pass `Path` objects to make every element a file); any other
    string is text. Other iterables (generators)
    yield their strings as text.
    """
    if isinstance(source, (str, os.PathLike)):
        yield from _read_file(source, text_column)
        return
    if _is_dataset(source):
        yield from _read_dataset(source, text_column)
        return
    in_list = isinstance(source, (list, tuple))
    for item in source:
        if isinstance(item, os.PathLike) or (in_list and _is_path_like(item)):
            yield from _read_file(item, text_column)
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(f"corpus items must be str or paths, got {type(item).__name__}: {item!r:.80}")


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (list, tuple)):
        shown = ", ".join(str(s)[:60] for s in source[:3])
        return f"[{shown}{', ...' if len(source) > 3 else ''}]"
    return type(source).__name__


def _non_empty_or_raise(texts: Iterator[str], source) -> Iterator[str]:
    """Check that the corpus holds at least one text with a non-space character before training starts."""
    seen = []
    for text in texts:
        seen.append(text)
        if text.strip():
            return itertools.chain(seen, texts)
    raise ValueError(f"empty corpus: no non-empty text found in {_describe(source)}")


def train_tokenizer(
    source,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    special_tokens=None,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    text_column: str = "text",
    show_progress: bool = True,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer and wrap it as a fast Hugging Face tokenizer.

    `source` is a path or list of paths (.txt, .jsonl/.json, .csv), a `datasets` Dataset/DatasetDict (read
    `text_column`), or any iterable of strings. The special tokens <|endoftext|> (eos, bos), <|pad|>, <|im_start|>,
    <|im_end|> always get ids 0..3; `special_tokens` adds more after them. Save the result with `save_pretrained`.

    训练字节级 BPE 分词器（与 GPT-2 相同：256 个字节全部在词表中，任何 Unicode 文本都能无损往返），
    并包装为可用 `AutoTokenizer.from_pretrained` 加载、带 ChatML 对话模板的 Hugging Face 快速分词器。
    """
    specials = list(dict.fromkeys(SPECIAL_TOKENS + list(special_tokens or [])))
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(specials):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it must hold the {len(alphabet)} byte symbols plus "
            f"{len(specials)} special tokens, i.e. at least {len(alphabet) + len(specials)}"
        )
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    texts = _non_empty_or_raise(iter_texts(source, text_column), source)

    backend = Tokenizer(models.BPE())  # no unk_token: every byte is in the vocabulary
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer)

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS_TOKEN,  # GPT-2 convention: one token marks both ends of a document
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=specials[2:],
        chat_template=chat_template,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path_or_repo, **kwargs) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by `train_tokenizer(...).save_pretrained(folder)` (or any Hub tokenizer).

    加载已保存的分词器；文件夹中没有分词器文件时给出明确的错误。
    """
    path = Path(path_or_repo)
    if path.is_dir():
        if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            raise FileNotFoundError(
                f"no tokenizer in {path}: expected tokenizer.json / tokenizer_config.json "
                f"(found: {sorted(p.name for p in path.iterdir())[:20]}); "
                "train one with scratchformers.tokenization_scratch.train_tokenizer and save_pretrained it there"
            )
        return AutoTokenizer.from_pretrained(str(path), **kwargs)
    if path.exists() or str(path_or_repo).startswith((".", "/", "~")) or str(path_or_repo).count("/") > 1:
        raise FileNotFoundError(f"tokenizer folder not found: {path_or_repo}")
    try:
        return AutoTokenizer.from_pretrained(str(path_or_repo), **kwargs)
    except OSError as error:
        raise FileNotFoundError(
            f"tokenizer not found: {path_or_repo!r} is not a local folder and could not be loaded from the Hub ({error})"
        ) from error


def compression_stats(tokenizer, texts) -> dict:
    """How many UTF-8 bytes and characters one token covers on `texts` (a string or a list of strings)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_chars = sum(len(t) for t in texts)
    n_tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else 0
    if n_tokens == 0:
        raise ValueError("compression_stats needs at least one non-empty text")
    return {
        "bytes": n_bytes,
        "chars": n_chars,
        "tokens": n_tokens,
        "bytes_per_token": n_bytes / n_tokens,
        "chars_per_token": n_chars / n_tokens,
    }


def compression_report(tokenizer, samples: dict[str, list[str]]) -> str:
    """A Markdown table of `compression_stats`, one row per language (key of `samples`)."""
    lines = [
        f"Tokenizer vocab size: {len(tokenizer)}",
        "",
        "| language | bytes | chars | tokens | bytes/token | chars/token |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for language, texts in samples.items():
        s = compression_stats(tokenizer, texts)
        lines.append(
            f"| {language} | {s['bytes']:,} | {s['chars']:,} | {s['tokens']:,} "
            f"| {s['bytes_per_token']:.2f} | {s['chars_per_token']:.2f} |"
        )
    return "\n".join(lines)
