"""One registry of model families: everything the rest of the package needs to know about each family.

A `ModelFamily` ties a model type to its configuration class, its model classes (one per Auto class), its native
transformers counterpart with the converters both ways, its default LoRA target modules and the line that describes
it on a model card. LoRA defaults, PEFT, the Hub push, the converter and the model card read this registry, so a
new family is its configuration and modeling files plus one `register_family(...)` call.
模型族注册表：配置类、模型类、对应的 transformers 原生模型与互转函数、默认 LoRA 目标模块、模型卡描述。
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

AUTO_CLASSES = {
    cls.__name__: cls
    for cls in (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                AutoModelForQuestionAnswering)
}


@dataclass(frozen=True)
class ModelFamily:
    """A model family as the package's tools see it (see the module docstring)."""

    name: str  # short name used in the CLI and reports: "gpt", "llama2"
    config_class: type
    heads: dict  # Auto class name ("AutoModelForCausalLM", ...) -> our class
    native_model_type: str  # the transformers model type it converts to and from: "gpt2", "llama", "bert"
    native_model: type  # the native class of the pretraining head, e.g. GPT2LMHeadModel, BertForMaskedLM
    native_config_class: type  # e.g. GPT2Config
    to_native: Callable  # our pretraining model -> the native one with the same weights
    from_native: Callable  # the native pretraining model -> ours
    lora_target_modules: tuple[str, ...] = ()
    card: dict = field(default_factory=dict)  # {"en": ..., "zh": ...}: what the architecture is, in a line
    native_keys: Callable | None = None  # adapts a native checkpoint's tensor names before a strict load
    pretraining_head: str = "AutoModelForCausalLM"  # decoders; "AutoModelForMaskedLM" for encoders

    @property
    def model_type(self) -> str:
        return self.config_class.model_type

    @property
    def pretraining_model(self) -> type:
        """The head the family is pretrained with and converts with: the causal LM, or the masked LM of an encoder."""
        return self.heads[self.pretraining_head]

    @property
    def is_decoder(self) -> bool:
        return self.pretraining_head == "AutoModelForCausalLM"

    @property
    def causal_lm(self) -> type:
        if not self.is_decoder:
            raise ValueError(f"{self.name} is an encoder family: it has no causal LM (use pretraining_model, "
                             f"{self.pretraining_model.__name__})")
        return self.heads["AutoModelForCausalLM"]


FAMILIES: dict[str, ModelFamily] = {}  # model type -> family


def register_family(family: ModelFamily) -> ModelFamily:
    """Register `family`: in this registry, with transformers' Auto classes, for remote code, and with PEFT's
    default LoRA targets (so a bare `LoraConfig()` works on it). 注册模型族（Auto 类、远程代码与 PEFT 默认目标模块）。"""
    unknown = sorted(set(family.heads) - set(AUTO_CLASSES))
    if unknown or family.pretraining_head not in family.heads:
        raise ValueError(f"family {family.name!r}: heads must include its pretraining head {family.pretraining_head}; "
                         f"unknown Auto classes {unknown}")
    FAMILIES[family.model_type] = family
    AutoConfig.register(family.model_type, family.config_class, exist_ok=True)
    family.config_class.register_for_auto_class()
    for auto_name, head in family.heads.items():
        AUTO_CLASSES[auto_name].register(family.config_class, head, exist_ok=True)
        head.register_for_auto_class(auto_name)
    if family.lora_target_modules:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.setdefault(family.model_type, list(family.lora_target_modules))
    return family


def family_of(config_or_model_type) -> ModelFamily:
    """The family of a config, a config.json dict, a model, or a model type string."""
    model_type = config_or_model_type
    if isinstance(model_type, dict):
        model_type = model_type.get("model_type")
    elif not isinstance(model_type, str):
        model_type = getattr(getattr(model_type, "config", model_type), "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(f"model_type {model_type!r} is not a scratchformers family (known: {', '.join(FAMILIES)})")
    return FAMILIES[model_type]


def family_of_native(native_model_type: str) -> ModelFamily | None:
    """The family that converts to and from transformers' `native_model_type` ("gpt2", "llama"), if any."""
    return next((f for f in FAMILIES.values() if f.native_model_type == native_model_type), None)


def family_of_folder(model_dir, job: str) -> tuple[ModelFamily, bool]:
    """(family, is_native) of a model folder: one of ours, or the native transformers model of a family. `job`
    names what is refused in the error ("GGUF export", ...) for a folder that is neither."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not model_dir.is_dir() or not config_path.is_file():
        raise ValueError(f"{model_dir} is not a model folder (no config.json): pass a folder saved by "
                         "`scratchformers pretrain` / `save_pretrained`")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: not valid JSON ({error.msg})") from None
    if model_type in FAMILIES:
        return FAMILIES[model_type], False
    family = family_of_native(model_type)
    if family is None:
        known = [*FAMILIES, *(f.native_model_type for f in FAMILIES.values())]
        raise ValueError(f"{config_path} has model_type={model_type!r}; {job} knows {', '.join(known)}")
    return family, True
