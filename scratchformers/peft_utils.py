"""PEFT with sensible defaults for scratchformers models.

PEFT guesses LoRA target modules from `config.model_type`; registering a family (`scratchformers.families`) teaches it
ours, so a bare `LoraConfig()` works. `get_peft_lora_model` picks the task type from the model class and passes the
family's targets explicitly.
"""

from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from transformers import PreTrainedModel

from .lora import DEFAULT_TARGET_MODULES


def register_peft_defaults():
    """Add every registered family to PEFT's table of default LoRA target modules (idempotent; importing
    scratchformers already does it)."""
    for model_type, targets in DEFAULT_TARGET_MODULES.items():
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.setdefault(model_type, list(targets))


def default_task_type(model: PreTrainedModel) -> str:
    return TaskType.SEQ_CLS if type(model).__name__.endswith("ForSequenceClassification") else TaskType.CAUSAL_LM


def get_peft_lora_model(model: PreTrainedModel, task_type: str | None = None, r: int = 8, lora_alpha: int = 16,
                        lora_dropout: float = 0.05, target_modules: list[str] | str | None = None,
                        **lora_config_kwargs) -> PeftModel:
    """Wrap a scratchformers model with PEFT LoRA; targets default to every projection of the family.

    用 PEFT 给模型加 LoRA：任务类型按模型类自动选择（分类模型为 SEQ_CLS，会同时训练并保存 `score` 头），目标模块默认是该家族的全部投影层。
    """
    model_type = model.config.model_type
    if target_modules is None:
        if model_type not in DEFAULT_TARGET_MODULES:
            raise ValueError(f"no default LoRA target modules for model_type={model_type!r}; pass target_modules")
        target_modules = list(DEFAULT_TARGET_MODULES[model_type])
    config = LoraConfig(task_type=task_type or default_task_type(model), r=r, lora_alpha=lora_alpha,
                        lora_dropout=lora_dropout, target_modules=target_modules, **lora_config_kwargs)
    return get_peft_model(model, config)
