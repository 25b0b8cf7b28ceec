"""scratchformers: GPT-2 and LLaMA-2 style language models written from scratch, native to Hugging Face tools.

Importing the package registers both families with the transformers Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForCausalLM`, `AutoModelForSequenceClassification`, `AutoModelForTokenClassification`,
`AutoModelForQuestionAnswering`) and marks them for remote code, so every `save_pretrained` folder also loads with
`trust_remote_code=True` where scratchformers is not installed.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_gpt import GPT_PRESETS, GPTConfig
from .configuration_llama2 import LLAMA2_PRESETS, Llama2Config
from .modeling_gpt import (
    GPTForCausalLM,
    GPTForQuestionAnswering,
    GPTForSequenceClassification,
    GPTForTokenClassification,
    GPTModel,
    GPTPreTrainedModel,
)
from .modeling_llama2 import (
    Llama2ForCausalLM,
    Llama2ForQuestionAnswering,
    Llama2ForSequenceClassification,
    Llama2ForTokenClassification,
    Llama2Model,
    Llama2PreTrainedModel,
)
from .utils import PRESETS, config_from_preset, count_parameters

__version__ = "0.1.0"

_AUTO_CLASSES = (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoModelForQuestionAnswering,
)
for _config, _heads in (
    (GPTConfig, (GPTModel, GPTForCausalLM, GPTForSequenceClassification, GPTForTokenClassification,
                 GPTForQuestionAnswering)),
    (Llama2Config, (Llama2Model, Llama2ForCausalLM, Llama2ForSequenceClassification, Llama2ForTokenClassification,
                    Llama2ForQuestionAnswering)),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    _config.register_for_auto_class()
    for _auto, _head in zip(_AUTO_CLASSES, _heads):
        _auto.register(_config, _head, exist_ok=True)
        _head.register_for_auto_class(_auto.__name__)

__all__ = [
    "GPTConfig",
    "GPT_PRESETS",
    "GPTPreTrainedModel",
    "GPTModel",
    "GPTForCausalLM",
    "GPTForSequenceClassification",
    "GPTForTokenClassification",
    "GPTForQuestionAnswering",
    "Llama2Config",
    "LLAMA2_PRESETS",
    "Llama2PreTrainedModel",
    "Llama2Model",
    "Llama2ForCausalLM",
    "Llama2ForSequenceClassification",
    "Llama2ForTokenClassification",
    "Llama2ForQuestionAnswering",
    "PRESETS",
    "config_from_preset",
    "count_parameters",
]
