"""Export a trained model to one GGUF file that llama.cpp (and Ollama, LM Studio, ...) runs.

Written with the `gguf` package's `GGUFWriter`, the writer llama.cpp maintains. The LLaMA2 family becomes GGUF
architecture `llama` (RMSNorm epsilon, RoPE base and scaling, grouped-query head counts, a tied or untied output),
the GPT family `gpt2`. Tensor names come from `gguf`'s own name map of each architecture; as llama.cpp's converter
does, Q and K weights go from transformers' rotate-half layout to the interleaved one llama.cpp's RoPE expects. The
tokenizer goes in the metadata: byte-level BPE tokens and merges (`tokenizer.ggml.model = gpt2`, GPT-2's pre-tokenizer),
special-token ids and the chat template. `f16` stores weights as float16, `q8_0` as llama.cpp's 8-bit blocks (the
vectors stay float32, as llama.cpp's converter keeps them).
导出为 llama.cpp 可运行的单个 GGUF 文件（含分词器与对话模板），支持 f16 与 q8_0。
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .families import family_of_folder

GGUF_DTYPES = ("f16", "q8_0")
ARCHITECTURES = {"scratch_llama2": "llama", "scratch_gpt": "gpt2"}


def permute_for_llama_cpp(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Q/K rows from transformers' rotate-half RoPE layout (pairs i and i + d/2) to the interleaved one (2i, 2i+1)."""
    return weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _model_of(model_dir: Path):
    """Our model of `model_dir` (a scratchformers folder, or a native GPT-2 / Llama one converted), and its family."""
    from .training.common import load_pretrained

    family, native = family_of_folder(model_dir, "GGUF export")
    if family.model_type not in ARCHITECTURES:
        raise ValueError(f"GGUF export knows the families {', '.join(ARCHITECTURES)}, not {family.model_type!r}")
    if native:
        return family.from_native(family.native_model.from_pretrained(model_dir).eval()), family
    return load_pretrained(model_dir).eval(), family


def _add_tokenizer(writer, gguf, model_dir: Path, config) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= config.vocab_size:
        raise ValueError(f"the tokenizer has ids up to {max(vocab.values())}, the model's vocab_size is {config.vocab_size}")
    by_id = {i: token for token, i in vocab.items()}
    special = set(tokenizer.all_special_tokens) | {t for t in vocab if t.startswith("<|") and t.endswith("|>")}
    tokens, types = [], []
    for i in range(config.vocab_size):  # the embedding may have more rows than the tokenizer has tokens
        token = by_id.get(i)
        tokens.append(token if token is not None else f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED if token is None else
                     gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")  # byte-level BPE
    writer.add_tokenizer_pre("gpt-2")  # GPT-2's regex, as the ByteLevel pre-tokenizer uses
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=config.vocab_size)
    if not special_vocab.merges and len(vocab) > 256 + len(tokenizer.all_special_tokens):
        raise ValueError(f"{model_dir / 'tokenizer.json'} holds no BPE merges")
    special_vocab.add_to_gguf(writer)
    for key, token in (("bos", tokenizer.bos_token), ("eos", tokenizer.eos_token), ("pad", tokenizer.pad_token)):
        if token is not None:
            getattr(writer, f"add_{key}_token_id")(tokenizer.convert_tokens_to_ids(token))
    writer.add_add_bos_token(False)  # scratchformers puts BOS in front itself (generation.prompt_ids)
    template = model_dir / "chat_template.jinja"
    if template.is_file():
        writer.add_chat_template(template.read_text(encoding="utf-8"))


def _add_hyperparameters(writer, gguf, config, arch: str) -> None:
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_vocab_size(config.vocab_size)
    if arch == "gpt2":
        writer.add_layer_norm_eps(config.layer_norm_eps)
        return
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    rope = config.rope_parameters
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope["rope_type"] == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif rope["rope_type"] != "default":
        raise ValueError(f"GGUF export does not write rope_type={rope['rope_type']!r} (default, linear and yarn it does)")


def _tensors(model, family, arch: str, gguf):
    """(GGUF name, float32 array) of every weight, named by gguf's map of the architecture."""
    config = model.config
    name_map = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), config.num_hidden_layers)
    state = model.state_dict()
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # llama.cpp uses the token embeddings as the output when it is missing
    for name, tensor in state.items():
        tensor = tensor.detach().float()
        if arch == "llama" and name.endswith("self_attn.q_proj.weight"):
            tensor = permute_for_llama_cpp(tensor, config.num_attention_heads)
        elif arch == "llama" and name.endswith("self_attn.k_proj.weight"):
            tensor = permute_for_llama_cpp(tensor, config.num_key_value_heads)
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for {name} in architecture {arch}")
        yield gguf_name, tensor.numpy()


def export_gguf(model_dir, out_file, dtype: str = "f16", overwrite: bool = False) -> Path:
    """Write `out_file` (GGUF) for the model in `model_dir` (either family, or its native GPT-2 / Llama form) with
    weights in `dtype` ("f16" or "q8_0"); nothing is written unless the export succeeds.

    导出 GGUF 文件（f16 或 q8_0），包含分词器（BPE 合并规则、特殊 token、对话模板）；失败时不写入任何内容。
    """
    try:
        import gguf
        from gguf.quants import quantize
    except ImportError:
        raise ImportError("GGUF export needs the gguf package: pip install 'scratchformers[gguf]'") from None

    model_dir, out_file = Path(model_dir), Path(out_file)
    if dtype not in GGUF_DTYPES:
        raise ValueError(f"unsupported GGUF dtype {dtype!r}; choose one of {', '.join(GGUF_DTYPES)}")
    if out_file.exists() and not overwrite:
        raise FileExistsError(f"{out_file} already exists; pass --overwrite to replace it, or choose another file")
    if out_file.is_dir():
        raise FileExistsError(f"{out_file} is a folder; give the path of the .gguf file to write")
    model, family = _model_of(model_dir)
    if not (model_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{model_dir} holds no tokenizer.json: llama.cpp needs the tokenizer in the GGUF file")
    arch = ARCHITECTURES[family.model_type]
    if getattr(model.config, "non_llama_options", None):
        raise ValueError(f"llama.cpp's llama does not run {', '.join(model.config.non_llama_options)}: no GGUF export")
    expected_act = {"gpt2": ("gelu_new", "gelu_pytorch_tanh"), "llama": ("silu",)}[arch]
    if model.config.hidden_act not in expected_act:  # the activation is part of llama.cpp's graph, not of the file
        raise ValueError(f"hidden_act={model.config.hidden_act!r}: llama.cpp's {arch} runs {expected_act[0]}")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{out_file.name}-", dir=out_file.parent)
    os.close(handle)
    try:
        writer = gguf.GGUFWriter(staging, arch)
        writer.add_name(model_dir.resolve().name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
        _add_hyperparameters(writer, gguf, model.config, arch)
        _add_tokenizer(writer, gguf, model_dir, model.config)
        quant = gguf.GGMLQuantizationType.F16 if dtype == "f16" else gguf.GGMLQuantizationType.Q8_0
        for name, array in _tensors(model, family, arch, gguf):
            if array.ndim < 2:  # norms and biases stay float32
                writer.add_tensor(name, array.astype(np.float32))
            elif quant == gguf.GGMLQuantizationType.Q8_0 and array.shape[-1] % 32 != 0:
                writer.add_tensor(name, array.astype(np.float16))  # q8_0 blocks are 32 values long
            else:
                writer.add_tensor(name, quantize(array, quant), raw_dtype=quant)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(staging, out_file)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return out_file
