"""Datasets for pretraining (causal and masked LM), SFT and classification, read through `scratchformers.corpus` and checked.

Every loader names the file (and line, where one exists) of bad input: a missing file, an empty corpus, a JSONL
row without the needed fields, a label outside the label set.
"""

from __future__ import annotations

import logging
import math
import random
from itertools import chain
from pathlib import Path

import datasets
import torch
from datasets import Dataset, DatasetDict
from transformers import DataCollatorForLanguageModeling, TrainerCallback

from ..corpus import line_of_record, load_records, load_texts

logger = logging.getLogger(__name__)


def load_text_dataset(paths, text_column: str = "text", split_by: str = "paragraph") -> Dataset:
    """The pretraining corpus: `scratchformers.corpus.load_texts` (one column "text"), the reader every job shares.

    读取预训练语料（与分词器训练读取方式相同），返回只含 "text" 列的 Dataset。
    """
    return load_texts(paths, text_column, split_by)


def split_text_file(path, output_dir, validation_percentage: float = 10.0, overwrite: bool = False):
    """Write the first (100 - p)% of the characters of `path` to `train.txt` and the rest to `validation.txt`.

    `path` is a file or an http(s) URL (read once, not kept). The cut is at a character position, as nanoGPT splits
    tinyshakespeare (first 90% / last 10%). Returns the two paths.
    按字符位置切分文本（文件或 http(s) 网址）：前 (100-p)% 为训练集，后 p% 为验证集（与 nanoGPT 相同）。
    """
    if not 0 < validation_percentage < 100:
        raise ValueError(f"validation_percentage must be between 0 and 100, got {validation_percentage}")
    out = Path(output_dir)
    targets = out / "train.txt", out / "validation.txt"
    existing = [str(target) for target in targets if target.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist; pass --overwrite to replace them")
    if str(path).startswith(("http://", "https://")):
        data, source = _download(str(path)), str(path)
    else:
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"text file not found: {source}")
        data = source.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{source}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise ValueError(f"empty corpus: {source} holds no text")
    cut = int(len(text) * (1 - validation_percentage / 100))
    out.mkdir(parents=True, exist_ok=True)
    targets[0].write_text(text[:cut], encoding="utf-8")
    targets[1].write_text(text[cut:], encoding="utf-8")
    return targets


def _download(url: str, timeout: float = 60,
              hint: str = "Without a network, download the file elsewhere and pass its path") -> bytes:
    """The body of `url`; a failure names the URL and says what to do instead (`hint`)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        raise ConnectionError(f"could not download {url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectionError(f"could not download {url}: {reason}. {hint}") from None


def pack_dataset(dataset: Dataset, tokenizer, block_size: int, text_column: str = "text", num_proc=None) -> Dataset:
    """Tokenize, end each document with EOS, concatenate, and cut into blocks of `block_size` tokens.

    Returns columns `input_ids` and `labels` (equal: the model shifts labels itself). The tail of each map batch
    shorter than a block is dropped, as in transformers' run_clm.
    分词后在每篇文档末尾加 EOS 分隔符，拼接并切成固定长度的块。
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token: packing needs it as the document separator")

    def tokenize_and_pack(batch):
        ids = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
        stream = list(chain.from_iterable(doc + [eos] for doc in ids))
        usable = len(stream) // block_size * block_size
        blocks = [stream[i : i + block_size] for i in range(0, usable, block_size)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    packed = dataset.map(
        tokenize_and_pack,
        batched=True,
        remove_columns=dataset.column_names,
        num_proc=num_proc,
        desc=f"Tokenizing and packing into blocks of {block_size}",
    )
    if len(packed) == 0:
        raise ValueError(
            f"the corpus is shorter than one block of {block_size} tokens; use more text or a smaller --block_size"
        )
    return packed


def pack_mlm_dataset(dataset: Dataset, tokenizer, block_size: int, text_column: str = "text", num_proc=None) -> Dataset:
    """Blocks for masked-LM pretraining, as BERT builds them: documents joined by `[SEP]` into one token stream, cut
    into pieces of `block_size - 2` tokens, each wrapped as `[CLS] piece [SEP]`, so that every block starts with the
    `[CLS]` token a classifier later reads. Returns the column `input_ids` (the collator masks and makes labels).
    掩码语言模型的训练块：文档之间以 [SEP] 相连，切成 block_size - 2 个 token 的片段，每段包成 [CLS] 片段 [SEP]。
    """
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None or tokenizer.mask_token_id is None:
        raise ValueError("masked-LM pretraining needs a tokenizer with [CLS], [SEP] and [MASK] tokens (a WordPiece "
                         "tokenizer: --tokenizer_type wordpiece); this one has none")
    if block_size < 3:
        raise ValueError(f"--block_size {block_size} leaves no room for text between [CLS] and [SEP]")
    piece = block_size - 2

    def tokenize_and_pack(batch):
        ids = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
        stream = list(chain.from_iterable(doc + [sep] for doc in ids if doc))
        return {"input_ids": [[cls] + stream[i : i + piece] + [sep] for i in range(0, len(stream) - piece + 1, piece)]}

    packed = dataset.map(tokenize_and_pack, batched=True, remove_columns=dataset.column_names, num_proc=num_proc,
                         desc=f"Tokenizing and packing into [CLS] ... [SEP] blocks of {block_size}")
    if len(packed) == 0:
        raise ValueError(
            f"the corpus is shorter than one block of {block_size} tokens; use more text or a smaller --block_size"
        )
    return packed


class WholeWordMaskCollator(DataCollatorForLanguageModeling):
    """`DataCollatorForLanguageModeling(whole_word_mask=True)` for WordPiece vocabularies: a word is a token that does
    not start with `##` plus the `##` pieces after it, so "play ##ing" is masked as a whole (BERT's rule).

    transformers' collator finds words from character offsets; packed blocks carry none, so offsets are made up from
    the tokens: a `##` piece starts where the token before it ends, a word start one past it. Each CJK character is a
    word of its own (whole-word masking of Chinese words needs a word segmenter).
    全词掩码：以 "##" 开头的子词与前面的 token 属于同一个词，整词一起被掩码。
    """

    def __init__(self, tokenizer, **kwargs):
        super().__init__(tokenizer, whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0, **kwargs)
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.continues_word = torch.tensor([token.startswith("##") for token in vocab])  # (V,)

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        new_word = ~self.continues_word[inputs]  # (B, T)
        starts = torch.arange(inputs.shape[1]) + new_word.long().cumsum(dim=1)  # a gap before every word start
        offsets = torch.stack([starts, starts + 1], dim=-1)  # (B, T, 2)
        return super().torch_mask_tokens(inputs, special_tokens_mask, offsets)


def split_validation(data_args, seed: int):
    """(train, validation) texts: --validation_files, else --validation_split_percentage of the train files (the
    validation is None when neither gives any)."""
    raw_train = load_texts(data_args.train_files, data_args.text_column, data_args.split_by)
    if data_args.validation_files:
        return raw_train, load_texts(data_args.validation_files, data_args.text_column, data_args.split_by)
    if data_args.validation_split_percentage > 0 and len(raw_train) > 1:
        split = raw_train.train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
        return split["train"], split["test"]
    return raw_train, None


def pack_splits(pack, raw_train, raw_eval, tokenizer, data_args, training_args):
    """`pack(texts, tokenizer, block_size)` on the train and validation texts (rank 0 first, the others read its
    cache); the validation blocks cut to --max_eval_samples. Returns (train, validation or None)."""
    with training_args.main_process_first(desc="tokenizing"):
        train = pack(raw_train, tokenizer, data_args.block_size, num_proc=data_args.num_proc)
        if raw_eval is None:
            return train, None
        validation = pack(raw_eval, tokenizer, data_args.block_size, num_proc=data_args.num_proc)
    if data_args.max_eval_samples is not None and data_args.max_eval_samples < len(validation):
        validation = validation.select(range(data_args.max_eval_samples))
    return train, validation


class RandomWindows(torch.utils.data.Dataset):
    """Training windows of `block_size` tokens that start anywhere in the token stream, anew every epoch.

    Item i of epoch e starts at a position of the packed stream drawn uniformly from (seed, e, i), as nanoGPT's
    `get_batch` draws its windows: they overlap, start mid-block, and a token is seen at different positions, with
    different context, each time. Over many epochs of a small corpus this overfits much less than the same fixed
    blocks every epoch (on tinyshakespeare in 10 minutes: 1.49 against 1.60 nats per character). An epoch holds as
    many windows as the stream has blocks, less one. `set_epoch` (see `EpochToDataset`) moves it on; the draw is
    deterministic, so a resumed run sees the same windows.
    每个窗口的起点在整条 token 流中均匀随机抽取（与 nanoGPT 相同），每个 epoch 都不同；多轮训练小语料时显著减少过拟合。
    """

    def __init__(self, blocks: Dataset, block_size: int, seed: int = 0):
        if len(blocks) < 2:
            raise ValueError(f"random windows need at least two blocks of {block_size} tokens; the corpus has "
                             f"{len(blocks)}: use more text, a smaller --block_size or --window_sampling fixed")
        self.blocks = blocks.with_format("torch", columns=["input_ids"])
        self.block_size = block_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.blocks) - 1

    def __getitem__(self, index: int) -> dict:
        start = random.Random(f"{self.seed}/{self.epoch}/{index}").randrange(len(self) * self.block_size)
        block, offset = divmod(start, self.block_size)
        pair = self.blocks[block : block + 2]["input_ids"]  # (2, block)
        window = pair.reshape(-1)[offset : offset + self.block_size]  # (block,)
        return {"input_ids": window, "labels": window}


class EpochToDataset(TrainerCallback):
    """Tells a dataset with `set_epoch` which epoch begins (Trainer tells only the sampler)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch or 0))


class LateDropout(TrainerCallback):
    """Keeps the model's dropout layers off for the first `after_epochs` epochs, then at their configured rates.

    "Late dropout" (Liu et al., 2023, Dropout Reduces Underfitting): a model that sees its corpus once or twice does
    not overfit, so dropout there only slows learning; after a few epochs it does, and dropout pays. The rates are
    read from the `nn.Dropout` modules when training begins and given back when it ends; a resumed run switches by
    the epoch of its checkpoint. The config is never changed, so a saved model keeps its rates.
    """

    def __init__(self, model, after_epochs: float):
        if after_epochs < 0:
            raise ValueError(f"dropout_after_epochs must be >= 0, got {after_epochs}")
        self.after_epochs = after_epochs
        self.rates = {module: module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)}

    def _switch(self, state):
        on = (state.epoch or 0) >= self.after_epochs
        for module, rate in self.rates.items():
            module.p = rate if on else 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._switch(state)

    def on_step_begin(self, args, state, control, **kwargs):
        self._switch(state)

    def on_train_end(self, args, state, control, **kwargs):
        for module, rate in self.rates.items():
            module.p = rate


# ----------------------------------------------------------------------------------------------------------------
# SFT: instruction/input/output rows or chat `messages`, loss only on the assistant's tokens


def read_sft_jsonl(path) -> list[list[dict]]:
    """Read an SFT file (JSONL, JSON, CSV/TSV or Parquet) into conversations (lists of {"role", "content"}).

    A row holds either `messages` (chat style, roles system/user/assistant) or `instruction`, optional `input`,
    and `output` (Alpaca style, rendered as one user turn and one assistant turn). Bad rows name file and line.
    读取 SFT 数据（instruction/input/output 或 messages），坏行报告文件名与行号。
    """
    conversations = []
    for file, records in load_records(path):
        for index, row in enumerate(records):
            conversations.append(row_to_messages(row, line_of_record(file, index)))
    if not conversations:
        raise ValueError(f"empty SFT file: {path} holds no rows")
    return conversations


def check_messages(messages: list, where: str, field: str = "messages") -> None:
    """Every item a {"role", "content"} dict with a known role; a bad one is an error naming `where` and its index."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "role" not in message:
            raise ValueError(f"{where}: {field}[{i}] needs string fields 'role' and 'content', got {message!r:.100}")
        if message["role"] not in ("system", "user", "assistant"):
            raise ValueError(f"{where}: {field}[{i}] has unknown role {message['role']!r}")


def row_to_messages(row, where: str = "row") -> list[dict]:
    """One SFT record as chat messages; raises ValueError naming `where` when the needed fields are missing."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if row.get("messages") is not None:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f"{where}: 'messages' must be a non-empty list")
        check_messages(messages, where)
        if not any(m["role"] == "assistant" and m["content"] for m in messages):
            raise ValueError(f"{where}: 'messages' has no non-empty assistant turn, so nothing to train on")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    missing = [key for key in ("instruction", "output") if not isinstance(row.get(key), str) or not row[key].strip()]
    if missing:
        raise ValueError(
            f"{where}: row needs 'messages' or non-empty 'instruction' and 'output'; missing {missing} "
            f"(found fields: {sorted(k for k, v in row.items() if v is not None)})"
        )
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise ValueError(f"{where}: 'input' must be a string, got {type(extra).__name__}")
    user = row["instruction"] + (f"\n\n{extra}" if extra.strip() else "")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    if isinstance(row.get("system"), str) and row["system"].strip():
        messages.insert(0, {"role": "system", "content": row["system"]})
    return messages


def tokenize_conversations(batch_messages, tokenizer, max_length: int) -> dict:
    """Render conversations with the chat template; `labels` copy `input_ids` on assistant tokens, -100 elsewhere.

    Truncates to `max_length`. A sample whose trainable tokens are all cut off gets empty lists (the caller drops
    and counts it).
    用对话模板渲染；只有助手回复（含结束符 <|im_end|>）参与损失，其余标签为 -100。
    """
    encoded = tokenizer.apply_chat_template(
        batch_messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    out = {"input_ids": [], "attention_mask": [], "labels": []}
    for ids, mask in zip(encoded["input_ids"], encoded["assistant_masks"]):
        ids, mask = ids[:max_length], mask[:max_length]
        labels = [token if keep else -100 for token, keep in zip(ids, mask)]
        if not any(keep for keep in mask):
            ids, labels = [], []
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["labels"].append(labels)
    return out


def build_sft_dataset(conversations, tokenizer, max_length: int, num_proc=None, source: str = "SFT data") -> Dataset:
    """Tokenize conversations for SFT and drop (with a counted warning) samples left with no trainable token."""
    if tokenizer.chat_template is None:
        raise ValueError("the tokenizer has no chat_template; SFT renders conversations through it")
    dataset = Dataset.from_dict({"messages": conversations})
    dataset = dataset.map(
        lambda batch: tokenize_conversations(batch["messages"], tokenizer, max_length),
        batched=True,
        remove_columns=["messages"],
        num_proc=num_proc,
        desc="Rendering conversations with the chat template",
    )
    kept = dataset.filter(lambda batch: [len(ids) > 0 for ids in batch["input_ids"]], batched=True)
    dropped = len(dataset) - len(kept)
    if dropped:
        logger.warning(
            f"{source}: dropped {dropped} of {len(dataset)} samples whose assistant answer starts after "
            f"max_length={max_length} tokens (no trainable token left); raise --max_length to keep them"
        )
    if len(kept) == 0:
        raise ValueError(f"{source}: every sample was truncated away at max_length={max_length}")
    kept.info.description = f"dropped={dropped}"
    return kept


class SFTCollator:
    """Right-pads `input_ids` with the pad token, `attention_mask` with 0 and `labels` with -100."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features):
        import torch

        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of

        def pad(key, value):
            return torch.tensor([f[key] + [value] * (length - len(f[key])) for f in features])

        return {
            "input_ids": pad("input_ids", self.pad_token_id),  # (B, T)
            "attention_mask": pad("attention_mask", 0),  # (B, T)
            "labels": pad("labels", -100),  # (B, T)
        }


# ----------------------------------------------------------------------------------------------------------------
# Sequence classification from CSV (text,label)


def load_classification_csv(files: dict[str, str], text_column="text", label_column="label", labels=None):
    """Load `{"train": path, "validation": path, ...}` CSV files; return (DatasetDict, label_names).

    The label set is `labels` when given, else the sorted labels of the train file. A row of any file whose label
    is outside the set raises ValueError naming the file and line.
    读取 text,label 格式的 CSV；标签不在标签集合中时报告文件和行号。
    """
    data = DatasetDict()
    for split, file in files.items():
        [(_, loaded)] = load_records(file)
        for column in (text_column, label_column):
            if column not in loaded.column_names:
                raise ValueError(f"{file}:1: no column {column!r} (columns: {loaded.column_names})")
        loaded = loaded.cast_column(label_column, datasets.Value("string"))
        if len(loaded) == 0:
            raise ValueError(f"empty corpus: {file} has a header but no rows")
        data[split] = loaded
    if labels:
        label_names = [str(label) for label in labels]
    else:
        label_names = sorted({str(label) for label in data["train"][label_column]}, key=_label_sort_key)
    label_set = set(label_names)
    for split, file in files.items():
        for index, (text, label) in enumerate(zip(data[split][text_column], data[split][label_column])):
            if label not in label_set:
                raise ValueError(
                    f"{line_of_record(file, index)}: label {label!r} is outside the label set {label_names} "
                    "(line numbers count a CSV header as line 1)"
                )
            if text is None or not str(text).strip():
                raise ValueError(f"{line_of_record(file, index)}: empty {text_column!r}")
    label_to_id = {name: i for i, name in enumerate(label_names)}
    data = data.map(
        lambda batch: {"label": [label_to_id[label] for label in batch[label_column]]},
        batched=True,
        remove_columns=[label_column] if label_column != "label" else None,
    )
    return data, label_names


def _label_sort_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)
