"""scratchformers: GPT-2, LLaMA-2 and BERT style models written from scratch, native to Hugging Face tools.

Importing the package registers the three families (`scratchformers.families`) with the transformers Auto classes
(`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`, `AutoModelForMaskedLM`, `AutoModelForSequenceClassification`,
`AutoModelForTokenClassification`, `AutoModelForQuestionAnswering`), with PEFT's default LoRA targets, and for remote
code, so every `save_pretrained` folder also loads with `trust_remote_code=True` where scratchformers is not installed.
"""

import logging


class _KnownNoise(logging.Filter):
    """Drops two harmless messages that importing transformers prints whenever torchao (the `quantize` extra) is
    installed: torchao failing to load its CUDA-only kernel libraries, and torch deprecating the way torchao
    registers its enums. Everything else these loggers say still shows."""

    def filter(self, record):
        message = record.getMessage()
        return not (message.startswith("Failed to load") and "/torchao/_C" in message) and "register_constant()" not in message


logging.getLogger("torchao").addFilter(_KnownNoise())
logging.getLogger("torch.utils._pytree").addFilter(_KnownNoise())

from transformers import BertConfig as NativeBertConfig
from transformers import BertForMaskedLM as NativeBertForMaskedLM
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from . import conversion
from .configuration_bert import BERT_PRESETS, BertConfig
from .configuration_gpt import GPT_PRESETS, GPTConfig
from .configuration_llama2 import LLAMA2_PRESETS, Llama2Config
from .modeling_bert import (
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertPreTrainedModel,
)
from .families import FAMILIES, ModelFamily, family_of, register_family
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

register_family(ModelFamily(
    name="gpt",
    config_class=GPTConfig,
    heads={"AutoModel": GPTModel, "AutoModelForCausalLM": GPTForCausalLM,
           "AutoModelForSequenceClassification": GPTForSequenceClassification,
           "AutoModelForTokenClassification": GPTForTokenClassification,
           "AutoModelForQuestionAnswering": GPTForQuestionAnswering},
    native_model_type="gpt2",
    native_model=GPT2LMHeadModel,
    native_config_class=GPT2Config,
    to_native=conversion.gpt_to_gpt2,
    from_native=conversion.gpt_from_gpt2,
    native_keys=conversion.gpt2_native_keys,
    lora_target_modules=("c_attn", "c_proj", "c_fc"),
    card={"en": "GPT-2 style (LayerNorm, learned positions, GELU)", "zh": "GPT-2 风格（LayerNorm、可学习位置编码、GELU）"},
))
register_family(ModelFamily(
    name="llama2",
    config_class=Llama2Config,
    heads={"AutoModel": Llama2Model, "AutoModelForCausalLM": Llama2ForCausalLM,
           "AutoModelForSequenceClassification": Llama2ForSequenceClassification,
           "AutoModelForTokenClassification": Llama2ForTokenClassification,
           "AutoModelForQuestionAnswering": Llama2ForQuestionAnswering},
    native_model_type="llama",
    native_model=LlamaForCausalLM,
    native_config_class=LlamaConfig,
    to_native=conversion.llama2_to_llama,
    from_native=conversion.llama2_from_llama,
    lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    card={"en": "LLaMA-2 style (RMSNorm, RoPE, SwiGLU, GQA)", "zh": "LLaMA-2 风格（RMSNorm、RoPE、SwiGLU、GQA）"},
))
register_family(ModelFamily(
    name="bert",
    config_class=BertConfig,
    heads={"AutoModel": BertModel, "AutoModelForMaskedLM": BertForMaskedLM,
           "AutoModelForSequenceClassification": BertForSequenceClassification,
           "AutoModelForTokenClassification": BertForTokenClassification},
    native_model_type="bert",
    native_model=NativeBertForMaskedLM,
    native_config_class=NativeBertConfig,
    to_native=conversion.bert_to_native,
    from_native=conversion.bert_from_native,
    native_keys=conversion.bert_native_keys,
    lora_target_modules=("query", "key", "value", "dense", "intermediate", "output"),
    card={"en": "BERT style encoder (post-LN, learned positions, GELU, masked-LM pretraining)",
          "zh": "BERT 风格编码器（Post-LN、可学习位置编码、GELU、掩码语言模型预训练）"},
    pretraining_head="AutoModelForMaskedLM",
))

__all__ = [
    "BertConfig",
    "BERT_PRESETS",
    "BertPreTrainedModel",
    "BertModel",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertForTokenClassification",
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
    "FAMILIES",
    "ModelFamily",
    "family_of",
    "register_family",
    "PRESETS",
    "config_from_preset",
    "count_parameters",
]
