"""Share scratchformers models on the Hugging Face Hub and convert weights to and from native checkpoints.

- `push_model_folder` / `push_adapter_folder` (and `stage_model_folder` / `stage_adapter_folder` for dry runs)
- `build_model_card`: a bilingual card filled from the training run's own records
- `convert_folder` and the per-format converters in `convert_gpt2`, `convert_llama`, `convert_meta_llama`
"""

from .convert import convert_folder
from .convert_gpt2 import gpt2_folder_to_gpt, gpt_folder_to_gpt2
from .convert_llama import llama2_folder_to_llama, llama_folder_to_llama2
from .convert_meta_llama import meta_llama_to_llama2
from .model_card import build_model_card, read_run_records
from .push import (
    HubError,
    push_adapter_folder,
    push_model_folder,
    stage_adapter_folder,
    stage_model_folder,
    validate_repo_id,
)

__all__ = [
    "convert_folder",
    "gpt2_folder_to_gpt",
    "gpt_folder_to_gpt2",
    "llama_folder_to_llama2",
    "llama2_folder_to_llama",
    "meta_llama_to_llama2",
    "build_model_card",
    "read_run_records",
    "HubError",
    "push_model_folder",
    "push_adapter_folder",
    "stage_model_folder",
    "stage_adapter_folder",
    "validate_repo_id",
]
