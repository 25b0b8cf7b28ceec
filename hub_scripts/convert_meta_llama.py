"""Convert Meta's original LLaMA-2 checkpoints (`params.json` + `consolidated.*.pth`) into scratchformers' LLaMA2.

Meta's layout differs from transformers' in three ways:
- names: `tok_embeddings`, `layers.N.attention.wq`, `feed_forward.w1`, ... instead of `model.embed_tokens`, ...
- RoPE: Meta rotates interleaved channel pairs (0,1), (2,3), ...; transformers rotates the two halves of each
  head (i, i + head_dim/2). Permuting the rows of `wq` and `wk` per head moves one layout into the other
  (`wk` has `num_key_value_heads` heads under GQA).
- model parallelism: the larger models come in several `consolidated.0N.pth` shards, split along the output
  dimension for column-parallel layers and along the input dimension for row-parallel ones.

    python -m hub_scripts convert path/to/llama-2-7b path/to/scratch-llama2-7b
"""

import re
import shutil
from pathlib import Path

import torch

from scratchformers import Llama2Config, Llama2ForCausalLM

from scratchformers.utils import atomic_output_folder

from ._io import read_json
from ._models import build_strict

_LAYER_NAMES = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_TOP_NAMES = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"}
_IGNORED = {"rope.freqs"}  # precomputed RoPE frequencies some checkpoints carry; recomputed from the config
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")
# row-parallel layers (and the parallel embedding) are split along dim 1, everything else along dim 0
_SPLIT_ON_INPUT_DIM = re.compile(r"(attention\.wo|feed_forward\.w2)\.weight$|^tok_embeddings\.weight$")


def permute_rotary(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rows of a Meta q/k projection (interleaved RoPE pairs) reordered for transformers' rotate-half RoPE."""
    out_features, in_features = weight.shape  # (heads * head_dim, hidden)
    head_dim = out_features // num_heads
    return (weight.view(num_heads, head_dim // 2, 2, in_features)  # (H, D/2, 2, C): pair (2i, 2i+1)
            .transpose(1, 2)  # (H, 2, D/2, C): first members of all pairs, then second members
            .reshape(out_features, in_features))


def merge_shards(shards: list[dict], names: list[str]) -> dict:
    """One state dict from Meta's model-parallel shards (norms are replicated, so the first copy is kept)."""
    keys = set(shards[0])
    for shard, name in zip(shards[1:], names[1:]):
        if set(shard) != keys:
            diff = sorted(set(shard) ^ keys)
            raise ValueError(f"{name} and {names[0]} hold different tensors: {', '.join(diff[:10])}.")
    if len(shards) == 1:
        return dict(shards[0])
    merged = {}
    for key in shards[0]:
        tensors = [shard[key] for shard in shards]
        if tensors[0].dim() == 1 or key in _IGNORED:
            merged[key] = tensors[0]
        else:
            merged[key] = torch.cat(tensors, dim=1 if _SPLIT_ON_INPUT_DIM.search(key) else 0)
    return merged


def meta_params_to_config(params: dict, state_dict: dict, max_position_embeddings: int = 4096) -> Llama2Config:
    """`params.json` as a `Llama2Config`; vocabulary and MLP sizes come from the tensors themselves."""
    if params.get("use_scaled_rope"):
        raise ValueError("params.json sets use_scaled_rope=true (Llama 3.1 RoPE scaling), which scratchformers' "
                         "LLaMA2 does not implement.")
    for name in ("dim", "n_heads", "n_layers"):
        if name not in params:
            raise ValueError(f"params.json has no {name!r}; is this a Meta LLaMA-2 checkpoint?")
    for name in ("tok_embeddings.weight", "layers.0.feed_forward.w1.weight"):
        if name not in state_dict:
            raise ValueError(f"The checkpoint has no tensor {name!r}; is this a Meta LLaMA-2 checkpoint?")
    vocab_size, _ = state_dict["tok_embeddings.weight"].shape
    if params.get("vocab_size", -1) not in (-1, vocab_size):
        raise ValueError(f"params.json says vocab_size={params['vocab_size']} but tok_embeddings.weight has "
                         f"{vocab_size} rows.")
    return Llama2Config(
        hidden_size=params["dim"],
        num_hidden_layers=params["n_layers"],
        num_attention_heads=params["n_heads"],
        num_key_value_heads=params.get("n_kv_heads") or params["n_heads"],
        intermediate_size=state_dict["layers.0.feed_forward.w1.weight"].shape[0],
        vocab_size=vocab_size,
        rms_norm_eps=params.get("norm_eps", 1e-5),
        rope_theta=float(params.get("rope_theta", 10000.0)),
        max_position_embeddings=max_position_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )


def meta_state_dict_to_llama2(state_dict: dict, config: Llama2Config) -> dict:
    """Meta's tensor names and RoPE layout -> ours; unknown names are an error that lists them."""
    converted, unknown = {}, []
    for key, tensor in state_dict.items():
        if key in _IGNORED:
            continue
        match = _LAYER_KEY.match(key)
        if key in _TOP_NAMES:
            converted[_TOP_NAMES[key]] = tensor
        elif match and match.group(2) in _LAYER_NAMES:
            layer, name = match.groups()
            if name == "attention.wq.weight":
                tensor = permute_rotary(tensor, config.num_attention_heads)
            elif name == "attention.wk.weight":
                tensor = permute_rotary(tensor, config.num_key_value_heads)
            converted[f"model.layers.{layer}.{_LAYER_NAMES[name]}"] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"Unknown keys in the Meta checkpoint: {', '.join(sorted(unknown))}.")
    return converted


def _convert_sentencepiece(source: Path, target: Path) -> str:
    """Copy Meta's `tokenizer.model`, and also write a fast tokenizer when the converter can run here."""
    shutil.copy2(source / "tokenizer.model", target / "tokenizer.model")
    try:
        from transformers import LlamaTokenizer

        # Meta's generation code starts every prompt with <s>; so does the converted tokenizer
        LlamaTokenizer.from_pretrained(str(source), add_bos_token=True).save_pretrained(target)
    except Exception as error:  # the conversion needs the optional `sentencepiece` package
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (f"copied tokenizer.model (SentencePiece) as is; converting it to a fast tokenizer failed ({reason}). "
                f"Install `sentencepiece` and run `LlamaTokenizer.from_pretrained(folder).save_pretrained(folder)`.")
    return "converted tokenizer.model to a fast tokenizer (tokenizer.json) and kept the original file"


def meta_llama_to_llama2(source, output, overwrite: bool = False, max_position_embeddings: int = 4096) -> list[str]:
    """Convert a Meta LLaMA-2 folder (params.json, consolidated.*.pth, tokenizer.model) to a scratchformers folder.

    Returns notes about what was done with the tokenizer. Meta's files do not record the context length:
    LLaMA-2 uses 4096 (`max_position_embeddings`).
    将 Meta 原始 LLaMA-2 权重（params.json + consolidated.*.pth，交错式 RoPE）转换为 scratchformers LLaMA2 目录。
    """
    source = Path(source)
    params = read_json(source / "params.json")
    paths = sorted(source.glob("consolidated.*.pth"))
    if not paths:
        raise FileNotFoundError(f"{source} holds no consolidated.*.pth weight files.")
    shards = [torch.load(path, map_location="cpu", weights_only=True, mmap=True) for path in paths]
    state_dict = merge_shards(shards, [path.name for path in paths])
    config = meta_params_to_config(params, state_dict, max_position_embeddings)
    try:
        model = build_strict(Llama2ForCausalLM, config, meta_state_dict_to_llama2(state_dict, config))
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    notes = []
    with atomic_output_folder(output, overwrite, sources=[source]) as staging:
        model.save_pretrained(staging)
        if (source / "tokenizer.model").is_file():
            notes.append(_convert_sentencepiece(source, staging))
        else:
            notes.append(f"{source} has no tokenizer.model; the output has no tokenizer.")
    return notes
