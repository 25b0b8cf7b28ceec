"""Byte-level BPE tokenizer: training sources, HF round trip, exact Unicode round trip, chat template, compression."""

import csv
import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from scratchformers.tokenization_scratch import (
    DEFAULT_CHAT_TEMPLATE,
    EOS_TOKEN,
    IM_END,
    IM_START,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    compression_report,
    compression_stats,
    load_tokenizer,
    train_tokenizer,
    train_tokenizer_from_iterator,
)

EN_WORDS = "the king and queen speak of love war and peace in the old castle tonight".split()
ZH_WORDS = ["贾宝玉", "林黛玉", "大观园", "今天", "天气", "很好", "我们", "一起", "读书", "写字"]
MARKER = "zqxjvk"  # a made-up word: if it becomes one token, the trainer really read the source


def make_corpus(n_lines: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = rng.choices(EN_WORDS, k=8) if rng.random() < 0.5 else rng.choices(ZH_WORDS, k=6)
        sep = " " if words[0] in EN_WORDS else ""
        lines.append(sep.join(words) + rng.choice([".\n", "!\n", "。\n", " 😀\n"]))
    return lines


def decode_exact(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer_from_iterator(make_corpus(), vocab_size=400, show_progress=False)


def marker_corpus():
    return [f"{MARKER} {MARKER} plain words here\n"] * 30


def assert_learned_marker(tok):
    assert tok.tokenize(MARKER) == [MARKER], tok.tokenize(MARKER)


# --- special tokens and HF wrapper -------------------------------------------------------------------------------


def test_special_tokens_get_ids_0_to_3_in_declared_order(tokenizer):
    assert tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2, 3]
    assert SPECIAL_TOKENS == [EOS_TOKEN, PAD_TOKEN, IM_START, IM_END]


def test_eos_bos_pad_are_set_and_there_is_no_unk_token(tokenizer):
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == (EOS_TOKEN, 0)
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == (EOS_TOKEN, 0)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == (PAD_TOKEN, 1)
    assert tokenizer.unk_token is None
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]
    assert set(SPECIAL_TOKENS) <= set(tokenizer.all_special_tokens)


def test_special_token_strings_in_text_encode_to_their_single_ids(tokenizer):
    ids = tokenizer(f"hi{EOS_TOKEN}{IM_START}user", add_special_tokens=False)["input_ids"]
    assert ids[len(tokenizer.tokenize("hi")) : len(tokenizer.tokenize("hi")) + 2] == [0, 2]


def test_encode_adds_no_special_tokens_and_skip_special_tokens_drops_chat_markers(tokenizer):
    assert 0 not in tokenizer("the king")["input_ids"]
    ids = tokenizer(f"{IM_START}user\nthe king{IM_END}")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nthe king"


def test_extra_special_tokens_come_after_the_four_defaults():
    tok = train_tokenizer_from_iterator(make_corpus(50), vocab_size=300, special_tokens=["<|tool|>", EOS_TOKEN],
                                        show_progress=False)
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS + ["<|tool|>"]) == [0, 1, 2, 3, 4]
    assert tok.tokenize("a<|tool|>b") == ["a", "<|tool|>", "b"]


def test_bpe_learns_merges_up_to_the_vocab_size(tokenizer):
    assert 300 < len(tokenizer) <= 400
    assert len(tokenizer.tokenize("大观园")) == 1  # 9 UTF-8 bytes merged into one token
    assert len(tokenizer.tokenize(" castle")) == 1


def test_saved_folder_has_transformers_files_and_autotokenizer_reload_encodes_identically(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / "chat_template.jinja").read_text(encoding="utf-8") == DEFAULT_CHAT_TEMPLATE
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(reloaded, PreTrainedTokenizerFast)
    samples = make_corpus(20, seed=1) + ["mixed 中文 and emoji 🧑‍🚀 \t\r\n\x00", f"a{EOS_TOKEN}b{PAD_TOKEN}"]
    assert reloaded(samples)["input_ids"] == tokenizer(samples)["input_ids"]
    assert reloaded.chat_template == tokenizer.chat_template
    assert (reloaded.eos_token_id, reloaded.pad_token_id, reloaded.bos_token_id) == (0, 1, 0)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert load_tokenizer(tmp_path).get_vocab() == tokenizer.get_vocab()


def test_saved_folder_loads_with_plain_transformers_in_a_fresh_process(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    text = "宝玉 and the king 😀\t\r\n"
    code = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({str(tmp_path / 'tok')!r})\n"
        "assert 'scratchformers' not in sys.modules\n"
        f"print(json.dumps([tok({text!r})['input_ids'], tok.pad_token_id, tok.eos_token_id]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    ids, pad_id, eos_id = json.loads(result.stdout.strip().splitlines()[-1])
    assert (ids, pad_id, eos_id) == (tokenizer(text)["input_ids"], 1, 0)


def test_pickled_tokenizer_encodes_identically_for_multiprocess_datasets_map(tokenizer):
    copy = pickle.loads(pickle.dumps(tokenizer))
    samples = make_corpus(10, seed=3)
    assert copy(samples)["input_ids"] == tokenizer(samples)["input_ids"]
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert copy.apply_chat_template(CONVERSATION, tokenize=False) == rendered


def test_load_tokenizer_names_a_folder_without_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no tokenizer in .*" + tmp_path.name):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="not_there"):
        load_tokenizer(tmp_path / "not_there")


def test_load_tokenizer_names_a_missing_bare_name_offline(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="'my-tokenizr' is not a local folder"):
        load_tokenizer("my-tokenizr")


# --- exact round trip ----------------------------------------------------------------------------------------------

HARD_CASES = [
    "",
    " ",
    "  leading and trailing  ",
    "hello , world . do n't it 's",  # what clean_up_tokenization_spaces would "fix"
    "红楼梦第一回：甄士隐梦幻识通灵，贾雨村风尘怀闺秀。",
    "emoji 😀 family 👨‍👩‍👧‍👦 flag 🇨🇳 skin 👍🏽",
    "tabs\tand\r\nwindows\rold mac\u2028line sep\u3000ideographic space",
    "control \x00\x01\x1b[31m\x7f\x85 chars",
    "combining e\u0301 vs é, ﬁ ligature, Ｆｕｌｌｗｉｄｔｈ",
    "private use \ue000 and plane 16 \U0010fffd and BOM \ufeff",
    f"{IM_START}user\nhi{IM_END}\n{EOS_TOKEN}{PAD_TOKEN}",
    "<|im_start without close, <|endoftext| truncated",
]


@pytest.mark.parametrize("text", HARD_CASES)
def test_hard_unicode_cases_round_trip_exactly(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert decode_exact(tokenizer, ids) == text
    assert tokenizer.decode(ids) == text  # the defaults of transformers 5 do not clean up spaces either


ANY_CHARACTER = st.characters(exclude_categories=("Cs",))  # every code point except lone surrogates (not encodable)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=ANY_CHARACTER, max_size=200))
def test_any_unicode_text_round_trips_exactly(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert all(0 <= i < len(tokenizer) for i in ids)
    assert decode_exact(tokenizer, ids) == text


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.text(alphabet=ANY_CHARACTER, max_size=20) | st.sampled_from(SPECIAL_TOKENS), max_size=8))
def test_text_mixed_with_special_tokens_round_trips_exactly(tokenizer, parts):
    text = "".join(parts)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert decode_exact(tokenizer, ids) == text


# --- chat template ---------------------------------------------------------------------------------------------------

CONVERSATION = [
    {"role": "system", "content": "You are kind."},
    {"role": "user", "content": "the king speaks?"},
    {"role": "assistant", "content": "大观园 peace!"},
    {"role": "user", "content": "and then"},
    {"role": "assistant", "content": " the queen."},
]


def test_chat_template_renders_chatml_and_generation_prompt(tokenizer):
    text = tokenizer.apply_chat_template(CONVERSATION[1:3], tokenize=False)
    assert text == "<|im_start|>user\nthe king speaks?<|im_end|>\n<|im_start|>assistant\n大观园 peace!<|im_end|>\n"
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nthe king speaks?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_apply_chat_template_tokenize_returns_dict_matching_plain_encoding(tokenizer):
    out = tokenizer.apply_chat_template(CONVERSATION, tokenize=True)
    rendered = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert out["input_ids"] == tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert out["attention_mask"] == [1] * len(out["input_ids"])


def expected_ids_and_mask(tok, conversation):
    """Build ids and mask segment by segment; special tokens and newlines are token boundaries in this template."""
    ids, mask = [], []

    def add(text, trainable):
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        mask.extend([int(trainable)] * len(piece))

    for message in conversation:
        add(f"{IM_START}{message['role']}\n", False)
        is_assistant = message["role"] == "assistant"
        add(message["content"] + IM_END, is_assistant)
        add("\n", False)
    return ids, mask


def test_assistant_mask_covers_exactly_assistant_content_and_its_im_end(tokenizer):
    out = tokenizer.apply_chat_template(CONVERSATION, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert (ids, mask) == expected_ids_and_mask(tokenizer, CONVERSATION)

    first = mask.index(1)
    assert decode_exact(tokenizer, ids[:first]).endswith(f"{IM_START}assistant\n")  # header not trainable
    assert decode_exact(tokenizer, [ids[first]]) == "大观园"  # first assistant token is trainable
    spans, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    trained_texts = [decode_exact(tokenizer, ids[a:b]) for a, b in spans]
    assert trained_texts == ["大观园 peace!" + IM_END, " the queen." + IM_END]
    assert all(ids[b - 1] == tokenizer.convert_tokens_to_ids(IM_END) for _, b in spans)  # last one is <|im_end|>
    assert all(mask[b] == 0 for _, b in spans if b < len(mask))  # the "\n" after <|im_end|> is not trained
    user_text = decode_exact(tokenizer, [i for i, m in zip(ids, mask) if not m])
    assert "the king speaks?" in user_text and "and then" in user_text


def test_assistant_mask_survives_save_and_reload(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = load_tokenizer(tmp_path)
    a = tokenizer.apply_chat_template(CONVERSATION, return_assistant_tokens_mask=True, return_dict=True)
    b = reloaded.apply_chat_template(CONVERSATION, return_assistant_tokens_mask=True, return_dict=True)
    assert a["assistant_masks"] == b["assistant_masks"] and a["input_ids"] == b["input_ids"]


def test_chat_template_none_trains_a_tokenizer_without_template():
    tok = train_tokenizer_from_iterator(make_corpus(50), vocab_size=300, chat_template=None, show_progress=False)
    assert tok.chat_template is None


# --- training sources ------------------------------------------------------------------------------------------------


def test_train_from_text_files_reads_every_file_and_a_folder_of_them(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("".join(make_corpus(50)), encoding="utf-8")
    b.write_text("".join(marker_corpus()), encoding="utf-8")
    assert_learned_marker(train_tokenizer([a, b], vocab_size=400, show_progress=False))
    assert_learned_marker(train_tokenizer([str(b)], vocab_size=300, show_progress=False))
    assert_learned_marker(train_tokenizer(b, vocab_size=300, show_progress=False))
    assert_learned_marker(train_tokenizer(tmp_path, vocab_size=400, show_progress=False))  # the folder's .txt files


def test_train_from_datasets_dataset_datasetdict_train_split_and_saved_folder(tmp_path):
    ds = datasets.Dataset.from_dict({"body": marker_corpus(), "id": list(range(30))})
    assert_learned_marker(train_tokenizer(ds, vocab_size=300, text_column="body", show_progress=False))
    with pytest.raises(ValueError, match="no column 'text'.*body"):
        train_tokenizer(ds, vocab_size=300, show_progress=False)

    marker_split = ds.rename_column("body", "text")
    other_split = datasets.Dataset.from_dict({"text": make_corpus(30), "id": list(range(30))})
    with_train = datasets.DatasetDict({"train": marker_split, "validation": other_split})
    assert_learned_marker(train_tokenizer(with_train, vocab_size=400, show_progress=False))
    with pytest.raises(ValueError, match="no 'train' split"):
        train_tokenizer(datasets.DatasetDict({"test": marker_split}), vocab_size=400, show_progress=False)

    with_train.save_to_disk(tmp_path / "saved")
    assert_learned_marker(train_tokenizer(tmp_path / "saved", vocab_size=400, show_progress=False))
    (tmp_path / "plain_folder").mkdir()
    with pytest.raises(ValueError, match="plain_folder is a folder with no data files"):
        train_tokenizer(tmp_path / "plain_folder", show_progress=False)


def test_train_from_jsonl_text_field_and_sft_fields(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({"text": t}) + "\n" for t in marker_corpus()), encoding="utf-8")
    assert_learned_marker(train_tokenizer(plain, vocab_size=300, show_progress=False))
    sft = tmp_path / "sft.jsonl"
    rows = [{"instruction": "say it", "input": "", "output": f"{MARKER} {MARKER}"} for _ in range(30)]
    sft.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert_learned_marker(train_tokenizer(sft, vocab_size=300, show_progress=False))


def test_train_from_csv_tsv_and_parquet_columns(tmp_path):
    path = tmp_path / "cls.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([[t, i % 2] for i, t in enumerate(marker_corpus())])
    assert_learned_marker(train_tokenizer(path, vocab_size=300, show_progress=False))
    with pytest.raises(ValueError, match=r"cls\.csv: no column 'sentence'"):
        train_tokenizer(path, vocab_size=300, text_column="sentence", show_progress=False)
    tsv = tmp_path / "cls.tsv"
    tsv.write_text("label\ttext\n" + "".join(f"1\t{t.strip()}\n" for t in marker_corpus()), encoding="utf-8")
    assert_learned_marker(train_tokenizer(tsv, vocab_size=300, show_progress=False))
    parquet = tmp_path / "cls.parquet"
    datasets.Dataset.from_dict({"text": marker_corpus()}).to_parquet(parquet)
    assert_learned_marker(train_tokenizer(parquet, vocab_size=300, show_progress=False))


def test_train_from_an_iterator_of_strings_in_memory():
    assert_learned_marker(train_tokenizer_from_iterator((t for t in marker_corpus()), vocab_size=300, show_progress=False))
    review = "房间很干净，价格120元/晚，服务周到。"  # no spaces and a "/": text, never taken for a path
    tok = train_tokenizer_from_iterator([review] * 40, vocab_size=300, show_progress=False)
    assert tok.decode(tok(review)["input_ids"]) == review


def test_strings_given_as_files_are_always_files(tmp_path):
    corpus = tmp_path / "my corpus.txt"  # an existing file is read even with a space in its name
    corpus.write_text("".join(marker_corpus()), encoding="utf-8")
    assert_learned_marker(train_tokenizer([str(corpus)], vocab_size=300, show_progress=False))
    with pytest.raises(FileNotFoundError, match="see notes.txt for more"):
        train_tokenizer([str(corpus), "see notes.txt for more"], show_progress=False)
    # a text where a file belongs, even one too long to be a file name, says where texts go
    for text in ("First line\nsecond line", "word " * 100):
        with pytest.raises(FileNotFoundError, match="train_tokenizer_from_iterator takes texts in memory"):
            train_tokenizer([text], show_progress=False)


# --- errors ----------------------------------------------------------------------------------------------------------


def test_missing_file_raises_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_tokenizer(tmp_path / "nope.txt", show_progress=False)


def test_empty_corpus_raises_value_error_naming_the_source(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty corpus.*blank.txt"):
        train_tokenizer(blank, show_progress=False)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(ValueError, match="empty corpus.*empty.jsonl"):
        train_tokenizer(tmp_path / "empty.jsonl", show_progress=False)
    with pytest.raises(ValueError, match="empty corpus"):
        train_tokenizer_from_iterator(["", "   "], show_progress=False)


def test_jsonl_line_that_is_not_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"text": broken\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        train_tokenizer(path, show_progress=False)


def test_jsonl_line_without_needed_field_names_file_and_line(tmp_path):
    path = tmp_path / "nofield.jsonl"
    path.write_text('{"text": "ok"}\n\n{"title": "no text here"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"nofield\.jsonl:3: .*'text'.*title"):
        train_tokenizer(path, show_progress=False)


def test_vocab_size_below_bytes_plus_specials_names_both_numbers():
    with pytest.raises(ValueError, match=r"vocab_size=100 .* at least 260"):
        train_tokenizer_from_iterator(["some text"], vocab_size=100, show_progress=False)
    with pytest.raises(ValueError, match=r"vocab_size=260 .* at least 261"):
        train_tokenizer_from_iterator(["some text"], vocab_size=260, special_tokens=["<|x|>"], show_progress=False)


def test_non_string_items_are_rejected_with_their_type():
    with pytest.raises(TypeError, match="int"):
        train_tokenizer_from_iterator(["text", 3], show_progress=False)
    with pytest.raises(TypeError, match="a data file must be a path .* int"):
        train_tokenizer([3], show_progress=False)


def test_non_utf8_file_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt:2: not UTF-8"):
        train_tokenizer(path, show_progress=False)


# --- compression -----------------------------------------------------------------------------------------------------


def test_compression_stats_counts_bytes_chars_and_tokens(tokenizer):
    texts = ["the king and queen", "大观园 今天天气很好"]
    stats = compression_stats(tokenizer, texts)
    n_tokens = sum(len(tokenizer.tokenize(t)) for t in texts)
    assert stats["bytes"] == len("the king and queen") + 3 * 9 + 1
    assert stats["chars"] == len("the king and queen") + 10
    assert stats["tokens"] == n_tokens
    assert stats["bytes_per_token"] == pytest.approx(stats["bytes"] / n_tokens)
    assert stats["chars_per_token"] == pytest.approx(stats["chars"] / n_tokens)
    assert compression_stats(tokenizer, "the king") == compression_stats(tokenizer, ["the king"])


def test_trained_tokenizer_compresses_in_domain_text_beyond_one_byte_per_token(tokenizer):
    held_out = make_corpus(40, seed=7)
    assert compression_stats(tokenizer, held_out)["bytes_per_token"] > 2.0
    raw_bytes = bytes(range(32, 127)).decode() * 3  # no merge applies: one byte per token at best
    assert compression_stats(tokenizer, raw_bytes)["bytes_per_token"] < 1.5


def test_compression_stats_rejects_empty_texts(tokenizer):
    with pytest.raises(ValueError, match="non-empty"):
        compression_stats(tokenizer, ["", ""])


def test_compression_report_is_a_markdown_row_per_language(tokenizer):
    samples = {"English": ["the king and queen speak"], "中文": ["林黛玉 读书 写字"]}
    report = compression_report(tokenizer, samples)
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].split("|")[1].strip() == "language"
    for row, (language, texts) in zip(rows[1:], samples.items()):
        cells = [c.strip() for c in row.strip("|").split("|")]
        stats = compression_stats(tokenizer, texts)
        assert cells[0] == language
        assert int(cells[3].replace(",", "")) == stats["tokens"]
        assert float(cells[4]) == pytest.approx(stats["bytes_per_token"], abs=0.005)
    assert len(rows) == 1 + len(samples)


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "zh_hongloumeng.txt").is_file(), reason="needs ../shared/data")
def test_compression_benchmark_on_real_corpora_compresses_english_and_chinese():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tokenizer_compression.py"
    result = subprocess.run(
        [sys.executable, str(script), "--vocab-size", "2000", "--data-dir", str(SHARED_DATA)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "held-out" in line]
    bytes_per_token = {row.split("|")[1].split()[0]: float(row.split("|")[5]) for row in rows}
    assert bytes_per_token["English"] > 1.5  # merges beat raw bytes (1.0) on held-out text
    assert bytes_per_token["中文"] > 3.0  # more than one Chinese character (3 bytes) per token


# ---- character-level tokenizer --------------------------------------------------------------------------------


def test_char_tokenizer_gives_one_token_per_seen_character_and_bytes_for_the_rest(tmp_path):
    corpus = "红楼梦 is a novel. 林黛玉 and 贾宝玉 😀\n" * 3
    char = train_tokenizer_from_iterator([corpus], tokenizer_type="char", min_frequency=1)
    seen = "红楼梦, 林黛玉 😀 novel"
    assert len(char(seen, add_special_tokens=False)["input_ids"]) == len(seen)
    unseen = "龙"  # not in the corpus: its three UTF-8 bytes
    assert len(char(unseen, add_special_tokens=False)["input_ids"]) == len(unseen.encode("utf-8")) == 3
    text = "红楼梦 龙 café e\u0301 \t\n" + "😀👍🏽"
    assert char.decode(char(text, add_special_tokens=False)["input_ids"]) == text
    char.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text)["input_ids"] == char(text)["input_ids"]
    assert char.convert_ids_to_tokens([0, 1, 2, 3]) == SPECIAL_TOKENS


def test_char_tokenizer_on_ascii_is_a_byte_tokenizer_and_vocab_size_caps_the_characters():
    assert len(train_tokenizer_from_iterator(["To be, or not to be"], tokenizer_type="char")) == 256 + len(SPECIAL_TOKENS)
    corpus = "的的的的一一一是是不"  # each CJK character needs 2 new tokens: a 2-byte prefix and itself
    capped = train_tokenizer_from_iterator([corpus], tokenizer_type="char", vocab_size=260 + 3, min_frequency=1)
    assert len(capped.tokenize("的")) == 1 and len(capped.tokenize("一")) == 3  # 一 no longer fits
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer_from_iterator([corpus], tokenizer_type="char", vocab_size=100)
    with pytest.raises(ValueError, match="unknown tokenizer_type 'word'"):
        train_tokenizer_from_iterator([corpus], tokenizer_type="word")
