"""Folder conversion: native GPT-2 <-> GPT, native Llama <-> LLaMA2, Meta LLaMA-2 -> LLaMA2 (random tiny weights)."""

import json

import pytest
import torch
from conftest import GPT, LLAMA, TOKENS, make_byte_tokenizer
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel, LlamaForCausalLM

import scratchformers as sf
from hub_scripts import cli
from hub_scripts.convert_gpt2 import gpt2_folder_to_gpt, gpt_folder_to_gpt2
from hub_scripts.convert_llama import llama2_folder_to_llama, llama_folder_to_llama2
from hub_scripts.convert_meta_llama import meta_llama_to_llama2

CHAT_TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"


def _tokenizer():
    tokenizer = make_byte_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _inputs(seed=5):
    return torch.randint(3, TOKENS["vocab_size"], (2, 11), generator=torch.Generator().manual_seed(seed))


def _native_gpt2(seed=0):
    native = GPT.to_native(GPT.model("gpt-2L-48w-3h-ffn100"))
    with torch.no_grad():  # weights of the native model's own: a test of native -> ours, not a copy back
        torch.manual_seed(seed)
        for p in native.parameters():
            p.normal_(0, 0.1)
    return native.eval()


def _native_llama(shape, seed=0):
    native = LLAMA.to_native(LLAMA.model(shape))
    with torch.no_grad():
        torch.manual_seed(seed)
        for p in native.parameters():
            p.normal_(0, 0.1)
    return native.eval()


def _assert_same_outputs(a, b):
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(a(x).logits, b(x).logits, atol=1e-5, rtol=0)
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(a.generate(x[:1], **greedy), b.generate(x[:1], **greedy))


def _assert_tensors_identical(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _assert_same_tokenizer(folder_a, folder_b):
    a, b = AutoTokenizer.from_pretrained(folder_a), AutoTokenizer.from_pretrained(folder_b)
    text = "Hello, 世界 🙂"
    assert a(text).input_ids == b(text).input_ids
    messages = [{"role": "user", "content": "hi"}]
    assert a.apply_chat_template(messages, tokenize=False) == b.apply_chat_template(messages, tokenize=False)


def test_gpt2_folder_to_gpt_and_back_keeps_logits_greedy_tokens_tokenizer_and_exact_tensors(tmp_path):
    native = _native_gpt2()
    native.save_pretrained(tmp_path / "gpt2")
    _tokenizer().save_pretrained(tmp_path / "gpt2")

    gpt2_folder_to_gpt(tmp_path / "gpt2", tmp_path / "ours")
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(ours, sf.GPTForCausalLM)
    _assert_same_outputs(ours, native)
    _assert_same_tokenizer(tmp_path / "gpt2", tmp_path / "ours")

    gpt_folder_to_gpt2(tmp_path / "ours", tmp_path / "back")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    _assert_tensors_identical(back, native)
    _assert_same_tokenizer(tmp_path / "gpt2", tmp_path / "back")


@pytest.mark.parametrize("shape, shard_size", [("llama-2L-64w-4h-gqa2", None), ("llama-1L-96w-8h-gqa4", "60KB")],
                         ids=["gqa2", "gqa4-sharded"])
def test_llama_folder_to_llama2_and_back_keeps_logits_greedy_tokens_and_exact_tensors_with_gqa(
        tmp_path, shape, shard_size):
    native = _native_llama(shape)
    native.save_pretrained(tmp_path / "llama", **({"max_shard_size": shard_size} if shard_size else {}))
    assert (tmp_path / "llama" / "model.safetensors.index.json").is_file() == bool(shard_size)
    _tokenizer().save_pretrained(tmp_path / "llama")

    llama_folder_to_llama2(tmp_path / "llama", tmp_path / "ours")
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert isinstance(ours, sf.Llama2ForCausalLM)
    assert ours.config.num_key_value_heads == native.config.num_key_value_heads
    _assert_same_outputs(ours, native)

    llama2_folder_to_llama(tmp_path / "ours", tmp_path / "back")
    back = LlamaForCausalLM.from_pretrained(tmp_path / "back").eval()
    _assert_tensors_identical(back, native)
    _assert_same_outputs(back, ours)
    _assert_same_tokenizer(tmp_path / "llama", tmp_path / "back")


def _interleave_rotary(weight, num_heads):
    """transformers' rotate-half rows back into Meta's interleaved pairs (the inverse of the converter's permute)."""
    out_features, in_features = weight.shape
    head_dim = out_features // num_heads
    return weight.view(num_heads, 2, head_dim // 2, in_features).transpose(1, 2).reshape(out_features, in_features)


META_NAMES = {"self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk",
              "self_attn.v_proj": "attention.wv", "self_attn.o_proj": "attention.wo",
              "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
              "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm",
              "post_attention_layernorm": "ffn_norm"}


def _write_meta_checkpoint(native, folder, num_shards):
    """Save `native` as Meta's params.json + consolidated.0N.pth (model-parallel shards, interleaved RoPE)."""
    config = native.config
    meta = {"tok_embeddings.weight": native.model.embed_tokens.weight, "norm.weight": native.model.norm.weight,
            "output.weight": native.lm_head.weight}
    for i, layer in enumerate(native.model.layers):
        for name, tensor in layer.state_dict().items():
            module = name.rsplit(".", 1)[0]
            meta[f"layers.{i}.{META_NAMES[module]}.weight"] = tensor
        meta[f"layers.{i}.attention.wq.weight"] = _interleave_rotary(layer.self_attn.q_proj.weight,
                                                                     config.num_attention_heads)
        meta[f"layers.{i}.attention.wk.weight"] = _interleave_rotary(layer.self_attn.k_proj.weight,
                                                                     config.num_key_value_heads)
    folder.mkdir()
    for rank in range(num_shards):
        shard = {}
        for key, tensor in meta.items():
            if tensor.dim() == 1:
                shard[key] = tensor.clone()
            else:
                row_parallel = ("attention.wo.weight", "feed_forward.w2.weight", "tok_embeddings.weight")
                dim = 1 if key.endswith(row_parallel) else 0
                shard[key] = tensor.detach().chunk(num_shards, dim=dim)[rank].clone()
        torch.save(shard, folder / f"consolidated.{rank:02d}.pth")
    params = {"dim": config.hidden_size, "n_layers": config.num_hidden_layers, "n_heads": config.num_attention_heads,
              "n_kv_heads": config.num_key_value_heads, "multiple_of": 32, "norm_eps": config.rms_norm_eps,
              "vocab_size": -1}
    (folder / "params.json").write_text(json.dumps(params))


@pytest.mark.parametrize("num_shards", [1, 2])
def test_meta_llama2_checkpoint_with_gqa_converts_to_the_same_logits_and_back_to_the_exact_native_tensors(
        tmp_path, num_shards):
    native = _native_llama("llama-2L-64w-4h-gqa2")
    _write_meta_checkpoint(native, tmp_path / "meta", num_shards)
    (tmp_path / "meta" / "tokenizer.model").write_bytes(b"sentencepiece model bytes")

    notes = meta_llama_to_llama2(tmp_path / "meta", tmp_path / "ours", max_position_embeddings=64)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert ours.config.num_key_value_heads == 2 and ours.config.max_position_embeddings == 64
    _assert_same_outputs(ours, native)
    assert (tmp_path / "ours" / "tokenizer.model").read_bytes() == b"sentencepiece model bytes"
    assert any("tokenizer.model" in note for note in notes)

    llama2_folder_to_llama(tmp_path / "ours", tmp_path / "back")
    back = LlamaForCausalLM.from_pretrained(tmp_path / "back").eval()
    for key, tensor in native.state_dict().items():
        assert torch.equal(back.state_dict()[key], tensor), key


def _edit_weights(folder, edit):
    path = folder / "model.safetensors"
    state_dict = load_file(path)
    edit(state_dict)
    save_file(state_dict, path, metadata={"format": "pt"})


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("transformer.h.1.mlp.c_fc.weight"), "missing keys: transformer.h.1.mlp.c_fc.weight"),
    (lambda sd: sd.update({"transformer.h.0.attn.extra": torch.zeros(3)}),
     "unexpected keys: transformer.h.0.attn.extra"),
    (lambda sd: sd.update({"transformer.ln_f.weight": torch.ones(47)}), "transformer.ln_f.weight: checkpoint (47,)"),
], ids=["missing", "unknown", "shape"])
def test_bad_gpt2_folder_raises_naming_the_key_and_writes_nothing(tmp_path, edit, message):
    _native_gpt2().save_pretrained(tmp_path / "gpt2")
    _edit_weights(tmp_path / "gpt2", edit)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        gpt2_folder_to_gpt(tmp_path / "gpt2", tmp_path / "ours")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2"]


def test_meta_checkpoint_with_an_unknown_or_missing_tensor_is_refused_by_name(tmp_path):
    native = _native_llama("llama-2L-64w-4h-gqa2")
    _write_meta_checkpoint(native, tmp_path / "meta", 1)
    path = tmp_path / "meta" / "consolidated.00.pth"
    shard = torch.load(path, weights_only=True)
    torch.save({**shard, "layers.0.attention.wz.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="Unknown keys in the Meta checkpoint: layers.0.attention.wz.weight"):
        meta_llama_to_llama2(tmp_path / "meta", tmp_path / "ours")
    del shard["layers.1.ffn_norm.weight"]
    torch.save(shard, path)
    with pytest.raises(ValueError, match="missing keys: model.layers.1.post_attention_layernorm.weight"):
        meta_llama_to_llama2(tmp_path / "meta", tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


def test_subcommands_register_on_another_programs_parser(tmp_path):
    """scratchformers' own CLI adds these subcommands with `register(subparsers)`."""
    import argparse

    parser = argparse.ArgumentParser(prog="scratchformers")
    subparsers = parser.add_subparsers(dest="command", required=True)
    subparsers.add_parser("pretrain")
    cli.register(subparsers)
    _native_gpt2().save_pretrained(tmp_path / "gpt2")
    args = parser.parse_args(["convert", str(tmp_path / "gpt2"), str(tmp_path / "ours")])
    assert args.func(args) == 0
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "scratch_gpt"
    push = parser.parse_args(["push", "run", "alice/m", "--private", "--revision", "v2", "--dry_run",
                              "--staging_dir", "out"])  # the underscore spelling of the other subcommands works
    assert (push.private, push.revision, push.dry_run, push.staging_dir) == (True, "v2", True, "out")


def test_cli_convert_detects_the_direction_and_never_overwrites_without_flag(tmp_path, capsys):
    native = _native_llama("llama-2L-64w-4h-gqa2")
    native.save_pretrained(tmp_path / "llama")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="already exists and is not empty; pass --overwrite"):
        cli.main(["convert", str(tmp_path / "llama"), str(out)])
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(SystemExit, match="would replace the input"):
        cli.main(["convert", str(tmp_path / "llama"), str(tmp_path), "--overwrite"])

    assert cli.main(["convert", str(tmp_path / "llama"), str(out), "--overwrite"]) == 0
    assert "llama -> scratch_llama2" in capsys.readouterr().out
    assert not (out / "notes.txt").exists()
    assert json.loads((out / "config.json").read_text())["model_type"] == "scratch_llama2"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial folders left


def test_gpt2_folder_in_the_original_upload_layout_converts(tmp_path):
    """openai-community/gpt2: GPT2Model keys (no `transformer.` prefix), mask buffers, n_inner=None, a .bin file."""
    native = _native_gpt2()
    native.config.n_inner = None
    native.config.activation_function = "gelu_new"
    native = GPT2LMHeadModel(native.config).eval()
    native.save_pretrained(tmp_path / "gpt2")
    saved = load_file(tmp_path / "gpt2" / "model.safetensors")
    state_dict = {key.removeprefix("transformer."): value for key, value in saved.items()}
    for i in range(native.config.n_layer):
        state_dict[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 64, 64))
    (tmp_path / "gpt2" / "model.safetensors").unlink()
    torch.save(state_dict, tmp_path / "gpt2" / "pytorch_model.bin")

    assert cli.main(["convert", str(tmp_path / "gpt2"), str(tmp_path / "ours")]) == 0
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert ours.config.intermediate_size == 4 * ours.config.hidden_size and ours.config.hidden_act == "gelu_new"
    _assert_same_outputs(ours, native)


@pytest.mark.slow  # optional: needs the `sentencepiece` package (pip install sentencepiece) to train a tokenizer.model
def test_meta_sentencepiece_tokenizer_is_converted_to_a_fast_tokenizer_with_the_same_ids(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    words = "the cat sat on a mat and the dog ran to the park 红楼梦 的 人 在 园 中".split()
    rng = torch.Generator().manual_seed(0)
    lines = [" ".join(words[i] for i in torch.randint(0, len(words), (12,), generator=rng).tolist())
             for _ in range(500)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / "tok"),
                                   vocab_size=290, model_type="bpe", byte_fallback=True, character_coverage=1.0,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    native = _native_llama("llama-2L-64w-4h-gqa2")
    _write_meta_checkpoint(native, tmp_path / "meta", 1)
    (tmp_path / "meta" / "tokenizer.model").write_bytes((tmp_path / "tok.model").read_bytes())

    meta_llama_to_llama2(tmp_path / "meta", tmp_path / "ours")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "ours")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tok.model"))
    for text in ["the cat sat on a mat", "红楼梦 的 人 zebra!", "émoji 🙂"]:
        assert tokenizer(text).input_ids == [1] + sp.encode(text)
        assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == text
