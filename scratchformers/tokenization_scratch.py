"""Byte-level BPE tokenizer training, wrapped as a Hugging Face fast tokenizer.

The recipe is GPT-2's: text is turned into UTF-8 bytes, each byte is shown as one printable character
(`ByteLevel` pre-tokenizer), and BPE learns merges on top of the 256 byte symbols. Because every byte is in the
vocabulary from the start there is no `<unk>`: any Unicode string round-trips exactly through encode/decode.

The result is a `PreTrainedTokenizerFast` (`TokenizersBackend` in transformers 5) with a ChatML chat template, so
`save_pretrained(folder)` writes `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja`, and
`AutoTokenizer.from_pretrained(folder)` loads it back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .corpus import load_texts, select_text

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, IM_START, IM_END]  # ids 0..3, in this order
# BERT's special tokens for the WordPiece vocabulary of encoders, ids 0..4 in this order ([PAD] = 0 as in BERT)
WORDPIECE_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

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



def _texts_of(source, text_column: str, split_by: str) -> Iterator[list[str]]:
    """Batches of texts from data files (see `scratchformers.corpus`) or a `datasets` Dataset / DatasetDict."""
    import datasets

    if isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if "train" not in source:
            raise ValueError(f"the DatasetDict has no 'train' split (splits: {list(source)})")
        source = source["train"]
    if isinstance(source, datasets.Dataset):
        texts = select_text(source, text_column, source="the dataset")
    elif isinstance(source, datasets.IterableDataset):
        texts = source.select_columns([text_column])
        return (batch[text_column] for batch in texts.iter(batch_size=1000))
    else:
        texts = load_texts(source, text_column, split_by)
    if len(texts) == 0:
        raise ValueError("empty corpus: the dataset holds no non-empty text")
    return (batch["text"] for batch in texts.iter(batch_size=1000))


def _non_empty_or_raise(texts) -> Iterator[str]:
    """Check that an iterator of texts holds at least one text with a non-space character before training starts."""
    texts = iter(texts)
    seen = []
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings, got {type(text).__name__}: {text!r:.80}")
        seen.append(text)
        if text.strip():
            return itertools.chain(seen, texts)
    raise ValueError("empty corpus: no non-empty text given")


def train_tokenizer(
    files,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    special_tokens=None,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    text_column: str = "text",
    show_progress: bool = True,
    tokenizer_type: str = "bpe",
    split_by: str = "paragraph",
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on data files and wrap it as a fast Hugging Face tokenizer.

    `files` is a path or a list of paths (.txt/.md, .jsonl/.json, .csv/.tsv, .parquet, a folder of them, a
    `save_to_disk` folder), read exactly as pretraining reads them (`scratchformers.corpus.load_texts`: the column
    `text_column`, .txt split by `split_by`), or a `datasets` Dataset/DatasetDict (its train split). Texts in memory
    go to `train_tokenizer_from_iterator`. The special tokens <|endoftext|> (eos, bos), <|pad|>, <|im_start|>,
    <|im_end|> always get ids 0..3; `special_tokens` adds more after them. `tokenizer_type="char"` gives one token
    per character of the corpus instead (bytes for any other character; `vocab_size` caps it). Save the result with
    `save_pretrained`.

    训练字节级 BPE 分词器（与 GPT-2 相同：256 个字节全部在词表中，任何 Unicode 文本都能无损往返），
    并包装为可用 `AutoTokenizer.from_pretrained` 加载、带 ChatML 对话模板的 Hugging Face 快速分词器。
    读取文件的方式与预训练完全相同；内存中的文本请用 `train_tokenizer_from_iterator`。
    """
    batches = _texts_of(files, text_column, split_by)
    return train_tokenizer_from_iterator(
        (text for batch in batches for text in batch), vocab_size, min_frequency, special_tokens, chat_template,
        show_progress, tokenizer_type,
    )


def train_tokenizer_from_iterator(
    texts,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    special_tokens=None,
    chat_template: str | None = DEFAULT_CHAT_TEMPLATE,
    show_progress: bool = True,
    tokenizer_type: str = "bpe",
) -> PreTrainedTokenizerFast:
    """`train_tokenizer` on texts in memory: any iterable of strings (a list, a generator, a dataset column).

    在内存中的文本（字符串的列表或生成器）上训练分词器，参数同 `train_tokenizer`。
    """
    if tokenizer_type not in ("bpe", "char", "wordpiece"):
        raise ValueError(f"unknown tokenizer_type {tokenizer_type!r}: choose 'bpe', 'char' or 'wordpiece'")
    if tokenizer_type == "wordpiece":
        return train_wordpiece_tokenizer(texts, vocab_size, min_frequency, special_tokens, show_progress)
    specials = list(dict.fromkeys(SPECIAL_TOKENS + list(special_tokens or [])))
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size is not None and vocab_size < len(alphabet) + len(specials):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it must hold the {len(alphabet)} byte symbols plus "
            f"{len(specials)} special tokens, i.e. at least {len(alphabet) + len(specials)}"
        )
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    texts = _non_empty_or_raise(texts)
    if tokenizer_type == "char":
        return _wrap(_char_level_bpe(texts, vocab_size, min_frequency, specials), specials, chat_template)
    backend = _byte_level(Tokenizer(models.BPE()))  # no unk_token: every byte is in the vocabulary
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=alphabet,
        show_progress=show_progress,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return _wrap(backend, specials, chat_template)


def train_wordpiece_tokenizer(texts, vocab_size: int = 8000, min_frequency: int = 2, special_tokens=None,
                              show_progress: bool = True, lowercase: bool = True) -> PreTrainedTokenizerFast:
    """Train BERT's tokenizer on texts: a WordPiece vocabulary with `[PAD] [UNK] [CLS] [SEP] [MASK]` (ids 0..4).

    As in BERT (and bert-base-chinese): text is cleaned and lower-cased (`lowercase`), every CJK character becomes
    a word of its own, words split at spaces and punctuation, and WordPiece cuts rare words into pieces marked
    `##` ("playing" -> "play", "##ing"). A sentence is encoded `[CLS] A [SEP]`, a pair `[CLS] A [SEP] B [SEP]` with
    `token_type_ids` 0 then 1. Characters never seen become `[UNK]`.

    训练 BERT 的 WordPiece 分词器：中文按字切分（每个汉字一个词），英文按空格和标点切分后再切成子词（"##" 表示词内续接）；
    单句编码为 `[CLS] A [SEP]`，句对为 `[CLS] A [SEP] B [SEP]`，并给出 `token_type_ids`。
    """
    specials = list(dict.fromkeys(WORDPIECE_SPECIAL_TOKENS + list(special_tokens or [])))
    if vocab_size is not None and vocab_size <= len(specials):
        raise ValueError(f"vocab_size={vocab_size} is too small: it must hold the {len(specials)} special tokens "
                         "and the characters of the corpus")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                    lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                        show_progress=show_progress, continuing_subword_prefix="##")
    backend.train_from_iterator(_non_empty_or_raise(texts), trainer=trainer)
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        extra_special_tokens=specials[5:],
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        clean_up_tokenization_spaces=True,
        do_lower_case=lowercase,
    )


def _byte_level(backend: Tokenizer) -> Tokenizer:
    """GPT-2's byte-level pre-tokenizer, decoder and post-processor on a BPE model."""
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend


def _char_level_bpe(texts, vocab_size: int | None, min_frequency: int, specials: list[str]) -> Tokenizer:
    """A character-level tokenizer: one token per character of the corpus, bytes for any other character.

    It is a byte-level BPE like the one `train_tokenizer` learns, whose merges only join the UTF-8 bytes of each
    character seen at least `min_frequency` times (the most frequent first, up to `vocab_size` tokens): "红" is one
    token, a character never seen falls back to its bytes, and no merge crosses a character boundary. On ASCII text it
    is a plain byte tokenizer (256 symbols + the special tokens). Being an ordinary byte-level BPE, it loads wherever
    GPT-2's tokenizer loads.
    字符级分词器：语料中每个字符一个 token，未见过的字符退回为 UTF-8 字节；本质上仍是字节级 BPE。
    """
    from collections import Counter

    counts = Counter()
    for text in texts:
        counts.update(text)
    to_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    vocab = {token: i for i, token in enumerate(specials)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    merges = []
    for char, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if count < min_frequency:
            break
        symbols = to_bytes.pre_tokenize_str(char)[0][0]  # the character's UTF-8 bytes as byte-level symbols
        # (prefix of k bytes, the merge that makes it from the prefix of k - 1 bytes and the k-th byte)
        new = [(symbols[:k], (symbols[: k - 1], symbols[k - 1])) for k in range(2, len(symbols) + 1)]
        new = [(token, merge) for token, merge in new if token not in vocab]
        if vocab_size is not None and len(vocab) + len(new) > vocab_size:
            break
        for token, merge in new:
            vocab[token] = len(vocab)
            merges.append(merge)
    return _byte_level(Tokenizer(models.BPE(vocab=vocab, merges=merges)))


def _wrap(backend: Tokenizer, specials: list[str], chat_template: str | None) -> PreTrainedTokenizerFast:
    """The `tokenizers` model as a transformers fast tokenizer with our special tokens and chat template."""
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


def resolve_folder_or_repo(name, what: str = "model") -> str:
    """`name` as a local folder when it is one, else as a Hub repo id; fails at once where the Hub cannot help.

    A name that can only mean a local path (it starts with ".", "/" or "~", has more than one "/", or its parent
    folder exists here) and is missing is a FileNotFoundError naming the path tried. A repo id is only tried when
    the Hub's host name resolves (an unreachable Hub would otherwise cost a minute of retries).
    本地文件夹优先；否则当作 Hub 仓库名，Hub 不可达时立即报错并说明尝试过的位置。
    """
    import os
    import socket
    from urllib.parse import urlparse

    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path)
    parent = path.parent
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1 or (str(parent) != "." and parent.is_dir()):
        kind = "is a file, not a folder" if path.is_file() else "does not exist"
        raise FileNotFoundError(f"{what} folder not found: {path.resolve()} {kind}")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return text  # transformers looks in the local cache only, and says so quickly
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        raise FileNotFoundError(
            f"{what} not found: {text!r} is not a local folder ({path.resolve()} does not exist) and the Hub at "
            f"{constants.ENDPOINT} cannot be reached to load it as a repo id"
        ) from None
    return text


def load_tokenizer(path_or_repo, **kwargs) -> PreTrainedTokenizerFast:
    """Load a tokenizer from a local folder saved with `save_pretrained`, or from a Hub repo id.

    加载已保存的分词器（本地文件夹或 Hub 仓库）；找不到时给出明确的错误。
    """
    source = resolve_folder_or_repo(path_or_repo, "tokenizer")
    path = Path(source)
    if path.is_dir() and not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise FileNotFoundError(
            f"no tokenizer in {path}: expected tokenizer.json / tokenizer_config.json "
            f"(found: {sorted(p.name for p in path.iterdir())[:20]}); "
            "train one with scratchformers.tokenization_scratch.train_tokenizer and save_pretrained it there"
        )
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as error:
        if path.is_dir():
            raise
        raise FileNotFoundError(
            f"tokenizer not found: {source!r} is not a local folder and could not be loaded from the Hub ({error})"
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
