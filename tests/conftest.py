"""Shared fixtures: tiny configurations of both families, their native twins, and a byte-level tokenizer."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

# two cores: several pytest workers each with two intra-op threads only fight over them
torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import scratchformers as sf  # noqa: E402
from scratchformers import conversion  # noqa: E402
from transformers import GPT2ForSequenceClassification, LlamaForSequenceClassification  # noqa: E402

VOCAB = 320
# a fenced code block of a Markdown page: (info string, body)
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)

# Shapes exercised by the parity tests: an odd number of layers, GQA with 2 and 4 query heads per K/V head,
# and a non-default intermediate size.
GPT_SHAPES = {
    "gpt-3L-64w-4h": dict(num_hidden_layers=3, hidden_size=64, num_attention_heads=4, max_position_embeddings=64),
    "gpt-2L-48w-3h-ffn100": dict(num_hidden_layers=2, hidden_size=48, num_attention_heads=3, intermediate_size=100,
                                 max_position_embeddings=64),
}
LLAMA_SHAPES = {
    "llama-3L-64w-4h-mha": dict(num_hidden_layers=3, hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                                intermediate_size=160, max_position_embeddings=64),
    "llama-2L-64w-4h-gqa2": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                                 intermediate_size=128, max_position_embeddings=64),
    "llama-1L-96w-8h-gqa4": dict(num_hidden_layers=1, hidden_size=96, num_attention_heads=8, num_key_value_heads=2,
                                 intermediate_size=200, max_position_embeddings=64),
}
TOKENS = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)


class Family:
    """One model family: how to build our model and its native transformers twin with the same weights."""

    def __init__(self, name, config_class, causal_lm, seq_cls, base, to_native, from_native,
                 native_config, native_state_dict, native_seq_cls_class, shapes):
        self.name = name
        self.config_class = config_class
        self.causal_lm = causal_lm
        self.seq_cls = seq_cls
        self.base = base
        self.to_native = to_native
        self.from_native = from_native
        self.native_config = native_config
        self.native_state_dict = native_state_dict
        self.native_seq_cls_class = native_seq_cls_class
        self.shapes = shapes

    def config(self, shape=None, **overrides):
        shape = shape or next(iter(self.shapes))
        return self.config_class(**{**self.shapes[shape], **TOKENS, **overrides})

    def model(self, shape=None, seed=0, **overrides):
        torch.manual_seed(seed)
        return self.causal_lm(self.config(shape, **overrides)).eval()

    def native_seq_cls(self, model):
        """transformers' own sequence classifier with the weights of our `model`."""
        config = self.native_config(model.config)
        config.num_labels = model.config.num_labels
        native = self.native_seq_cls_class(config)
        conversion.load_state_dict_strict(native, self.native_state_dict(model.state_dict()))
        return native.eval()

    def __repr__(self):
        return self.name


GPT = Family("gpt", sf.GPTConfig, sf.GPTForCausalLM, sf.GPTForSequenceClassification, sf.GPTModel,
             conversion.gpt_to_gpt2, conversion.gpt_from_gpt2, conversion.gpt_config_to_gpt2,
             conversion.gpt_state_dict_to_gpt2, GPT2ForSequenceClassification, GPT_SHAPES)
LLAMA = Family("llama2", sf.Llama2Config, sf.Llama2ForCausalLM, sf.Llama2ForSequenceClassification, sf.Llama2Model,
               conversion.llama2_to_llama, conversion.llama2_from_llama, conversion.llama2_config_to_llama,
               dict, LlamaForSequenceClassification, LLAMA_SHAPES)
FAMILIES = [GPT, LLAMA]


@pytest.fixture(params=FAMILIES, ids=lambda f: f.name)
def family(request):
    return request.param


def make_byte_tokenizer():
    """A 256-byte-token fast tokenizer with pad/bos/eos at ids 0-2 (no training: every byte is a token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        model_input_names=["input_ids", "attention_mask"],
    )


@pytest.fixture(scope="session")
def byte_tokenizer():
    return make_byte_tokenizer()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """160 generated stories in one .txt file (test modules that need another corpus define their own `corpus`)."""
    from scratchformers.training.synthetic import make_story_corpus

    path = tmp_path_factory.mktemp("corpus") / "stories.txt"
    path.write_text("\n\n".join(make_story_corpus(160, seed=3)) + "\n", encoding="utf-8")
    return path


# a small model of each family, for the export tests (ONNX, GGUF, int8)
SMALL_OVERRIDES = {
    "gpt-micro": "num_hidden_layers=2,hidden_size=64,num_attention_heads=4",
    "llama2-tiny": "num_hidden_layers=2,hidden_size=64,num_attention_heads=4,num_key_value_heads=2,intermediate_size=128",
}


def train_small_model(folder, preset: str, text: str, vocab_size: int):
    """Train a tokenizer and 60 steps of `preset` on `text` in `folder`, so greedy decoding is not one repeated
    token; returns the model folder."""
    from transformers import TrainingArguments

    from scratchformers.tokenization_scratch import train_tokenizer
    from scratchformers.training.arguments import ModelArguments, PretrainDataArguments
    from scratchformers.training.pretrain import run_pretrain

    (folder / "train.txt").write_text(text, encoding="utf-8")
    train_tokenizer([folder / "train.txt"], vocab_size=vocab_size, show_progress=False).save_pretrained(folder / "tok")
    run_pretrain(
        ModelArguments(preset=preset, config_overrides=SMALL_OVERRIDES[preset],
                       tokenizer_name_or_path=str(folder / "tok")),
        PretrainDataArguments(train_files=[str(folder / "train.txt")], block_size=128, sample_max_new_tokens=4,
                              validation_split_percentage=0, overwrite=True),
        TrainingArguments(output_dir=str(folder / "model"), max_steps=60, per_device_train_batch_size=8,
                          learning_rate=3e-3, save_strategy="no", report_to=[], use_cpu=True, seed=1,
                          disable_tqdm=True, logging_steps=20),
        verbose=False,
    )
    return folder / "model"


def assert_refuses_bad_model_folders(export, model_dir, tmp_path, out, job: str,
                                     missing_tokenizer=(FileNotFoundError, "holds no tokenizer.json")):
    """The exporters' bad-input contract: `export(folder, out)` refuses `t5` (a model type no family converts,
    named with `job`) and a copy of `model_dir` without its tokenizer files, and leaves nothing in `tmp_path`: no
    output, no staging folder."""
    import shutil

    before = sorted(p.name for p in tmp_path.iterdir())
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text('{"model_type": "t5"}')
    no_tokenizer = tmp_path / "no_tokenizer"
    shutil.copytree(model_dir, no_tokenizer, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(ValueError, match=f"model_type='t5'; {job} knows"):
        export(t5, out)
    error, message = missing_tokenizer
    with pytest.raises(error, match=message):
        export(no_tokenizer, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "t5", "no_tokenizer"])


def assert_keeps_a_folder_it_did_not_write(export, model_dir, out, not_ours: str):
    """`export(model_dir, out)` into a folder holding a user's file: refused without --overwrite, and with it too
    (the error says `not_ours`), the file untouched."""
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        export(model_dir, out)
    with pytest.raises(FileExistsError, match=not_ours):
        export(model_dir, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"


def serve_upstream(served: Path, name: str, texts: list[str]) -> None:
    """Upstream files of the `fetch-data` set `name` (one text per path), where `http_folder` serves them as a mirror
    of raw.githubusercontent.com does: `<repo>/<commit>/<path>`."""
    from scratchformers.training.public_data import DATASETS

    dataset = DATASETS[name]
    for path, text in zip(dataset.paths, texts, strict=True):
        target = served / dataset.repo / dataset.commit / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


@pytest.fixture
def http_folder(tmp_path, monkeypatch):
    """A folder served over HTTP on localhost while the test runs: `(folder, base_url)`; the stand-in for a download
    address (the tests have no internet). A proxy set in the environment is bypassed for it."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, ",".join(filter(None, [os.environ.get(name), "127.0.0.1"])))
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# The start of a script that must run where scratchformers cannot be imported (remote-code tests): the package is
# hidden from the import system and the working directory is not on the path.
WITHOUT_SCRATCHFORMERS = textwrap.dedent(
    """
    import sys

    class HideScratchformers:
        def find_spec(self, name, path=None, target=None):
            if name == "scratchformers" or name.startswith("scratchformers."):
                raise ModuleNotFoundError("scratchformers is hidden in this test")
            return None

    sys.meta_path.insert(0, HideScratchformers())
    sys.path = [p for p in sys.path if p not in ("", ".")]
    """
)


def run_without_scratchformers(tmp_path, script: str, *args) -> subprocess.CompletedProcess:
    """Run `WITHOUT_SCRATCHFORMERS + script` with `args` in a fresh interpreter whose working folder is outside the
    repository, offline, with its own Hugging Face cache."""
    path = tmp_path / "without_scratchformers.py"
    path.write_text(WITHOUT_SCRATCHFORMERS + textwrap.dedent(script))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    work_dir = tmp_path / "elsewhere"
    work_dir.mkdir(exist_ok=True)
    assert Path(__file__).resolve().parents[1] not in work_dir.resolve().parents  # not inside the repository
    return subprocess.run([sys.executable, str(path), *map(str, args)], cwd=work_dir, env=env, capture_output=True,
                          text=True, timeout=300)

