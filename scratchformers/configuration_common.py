"""Checks both configuration classes share: an unknown key is an error that names the closest known key.

A typo such as `num_hiden_layers=1` would otherwise be stored on the config, written to `config.json` and have no
effect at all. Keys that transformers itself writes or reads (some only in configs saved by older versions) are known.
Imports only the standard library and transformers, so `save_pretrained` ships it beside the configuration files.
"""

import dataclasses
import difflib

from transformers import GenerationConfig

# Keys transformers pops or sets on any config, including ones written by transformers 4.x and by quantizers.
TRANSFORMERS_KEYS = frozenset({
    "model_type", "auto_map", "_name_or_path", "name_or_path", "_commit_hash", "torch_dtype", "num_labels",
    "output_attentions", "attn_implementation", "experts_implementation", "per_layer_config",
    "_attn_implementation_internal", "_experts_implementation_internal", "quantization_config",
    "tokenizer_class", "prefix", "task_specific_params", "finetuning_task", "torchscript", "pruned_heads",
    "is_decoder", "add_cross_attention", "cross_attention_hidden_size", "tie_encoder_decoder",
    "decoder_start_token_id", "sep_token_id", "base_model_tp_plan", "base_model_pp_plan", "base_model_ep_plan",
})


def check_config_keys(config, kwargs: dict, legacy=()) -> None:
    """Raise ValueError for a key of `kwargs` that is neither a field of `config`, a name of its `attribute_map`,
    a key transformers handles, a generation parameter, nor one of `legacy` (fields of earlier versions)."""
    known = {field.name for field in dataclasses.fields(config)}
    known |= set(config.attribute_map) | TRANSFORMERS_KEYS | set(legacy)
    known |= set(GenerationConfig._get_default_generation_params())
    unknown = sorted(key for key in kwargs if key not in known)
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    name = type(config).__name__
    raise ValueError(f"{name}: unknown config key {', '.join(hints)}; it would be saved and have no effect.")
