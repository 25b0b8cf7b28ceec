"""Share scratchformers models on the Hugging Face Hub and convert weights to and from native checkpoints.

- `push_model_folder` / `push_adapter_folder` (and `stage_model_folder` / `stage_adapter_folder` for dry runs)
- `build_model_card`: a bilingual card filled from the training run's own records
- `convert_folder` and the per-format converters in `convert_gpt2`, `convert_llama`, `convert_meta_llama`

Names are imported on first use: `hub_scripts.cli` (its argument parsers) imports no torch itself.
"""

import importlib

_EXPORTS = {
    "convert_folder": "convert",
    "gpt2_folder_to_gpt": "convert_gpt2",
    "gpt_folder_to_gpt2": "convert_gpt2",
    "llama_folder_to_llama2": "convert_llama",
    "llama2_folder_to_llama": "convert_llama",
    "meta_llama_to_llama2": "convert_meta_llama",
    "build_model_card": "model_card",
    "read_run_records": "model_card",
    "HubError": "push",
    "push_model_folder": "push",
    "push_adapter_folder": "push",
    "stage_model_folder": "push",
    "stage_adapter_folder": "push",
    "validate_repo_id": "push",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hub_scripts' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__():
    return sorted(list(globals()) + __all__)
