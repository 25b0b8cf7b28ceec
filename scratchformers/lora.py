"""LoRA written by hand, readable top to bottom, and interchangeable with PEFT.

LoRA (Hu et al., 2021) freezes a pretrained linear layer W0 and learns a low-rank update:

    h = W0·x + (alpha / r) · B(A·x)        A: (r, in_features), B: (out_features, r), r << min(in, out)

A starts random (kaiming-uniform, as `nn.Linear` does) and B starts at zero, so training begins exactly at the
pretrained model. This file does what PEFT's `LoraConfig` + `get_peft_model` do for linear layers, with the same
initialisation, scaling, dropout placement and on-disk format, so that:

- `save_lora_adapter(model, folder)` writes `adapter_config.json` + `adapter_model.safetensors` that
  `peft.PeftModel.from_pretrained(base, folder)` loads, and
- `load_lora_adapter(base, folder)` loads an adapter that PEFT trained.

LoRA 手写实现：冻结原线性层 W0，只训练低秩矩阵 A、B（h = W0·x + (α/r)·B(A·x)）。初始化、缩放、dropout 位置与
磁盘格式都与 PEFT 一致，因此两边的适配器可以互相加载。

    from scratchformers.lora import LoraSettings, add_lora, save_lora_adapter
    add_lora(model, LoraSettings(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    ...train...
    save_lora_adapter(model, "my-adapter")
"""

import json
import math
import os
import re
from contextlib import contextmanager
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from .families import FAMILIES

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."

class _DefaultTargetModules(Mapping):
    """model type -> the family's default LoRA target modules, read from the family registry."""

    def __getitem__(self, model_type):
        return list(FAMILIES[model_type].lora_target_modules)

    def __iter__(self):
        return iter(FAMILIES)

    def __len__(self):
        return len(FAMILIES)


# Linear layers of each family ("all linear layers except the head" gives the same list).
DEFAULT_TARGET_MODULES = _DefaultTargetModules()
# Heads never adapted by "all-linear": the LM head and the classification head (trained in full instead).
HEAD_NAMES = ("lm_head", "score", "classifier")


@dataclass
class LoraSettings:
    """What to adapt and how: the fields and defaults of `peft.LoraConfig` that plain LoRA uses.

    `target_modules` is a list of module names (a name matches a module whose full name equals it or ends with
    `.name`), a single string read as a regular expression that must match the full module name, or "all-linear".
    `None` picks `DEFAULT_TARGET_MODULES` for the model's family. `modules_to_save` are trained in full and saved
    with the adapter; `None` means `["classifier", "score"]` (the heads of BERT and of the decoders) for SEQ_CLS, as
    PEFT does.
    """

    r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None
    use_rslora: bool = False
    init_lora_weights: bool | str = True
    task_type: str | None = None
    base_model_name_or_path: str | None = None
    exclude_modules: list[str] | str = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer, got r={self.r!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got lora_dropout={self.lora_dropout!r}")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise ValueError(f"init_lora_weights must be True, False or 'gaussian', got {self.init_lora_weights!r}")
        if self.task_type not in (None, "CAUSAL_LM", "SEQ_CLS"):
            raise ValueError(f"task_type must be None, 'CAUSAL_LM' or 'SEQ_CLS', got {self.task_type!r}")
        if self.modules_to_save is None and self.task_type == "SEQ_CLS":
            self.modules_to_save = ["classifier", "score"]

    @property
    def scaling(self) -> float:
        return self.lora_alpha / math.sqrt(self.r) if self.use_rslora else self.lora_alpha / self.r

    def to_peft_dict(self) -> dict:
        """The `adapter_config.json` content PEFT reads (fields left out take PEFT's defaults)."""
        targets = self.target_modules
        return {
            "peft_type": "LORA",
            "task_type": self.task_type,
            "base_model_name_or_path": self.base_model_name_or_path,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": sorted(targets) if isinstance(targets, (list, tuple, set)) else targets,
            "exclude_modules": (self.exclude_modules if isinstance(self.exclude_modules, str)
                                else sorted(self.exclude_modules) or None),
            "modules_to_save": self.modules_to_save,
            "use_rslora": self.use_rslora,
            "init_lora_weights": self.init_lora_weights,
            "bias": "none",
            "fan_in_fan_out": False,
            "inference_mode": True,
        }

    @classmethod
    def from_peft_dict(cls, config: dict, source: str = ADAPTER_CONFIG_NAME) -> "LoraSettings":
        """Read an `adapter_config.json`; refuse the options this hand-rolled LoRA does not implement."""
        if config.get("peft_type") != "LORA":
            raise ValueError(f"{source}: peft_type must be 'LORA', got {config.get('peft_type')!r}")
        unsupported = {
            "use_dora": False, "bias": "none", "fan_in_fan_out": False, "lora_bias": False,
            "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None, "target_parameters": None,
        }
        for key, plain in unsupported.items():
            value = config.get(key)
            if value is not None and value != plain:
                raise ValueError(f"{source}: {key}={config[key]!r} is not supported by the hand-rolled LoRA")
        return cls(
            r=config["r"],
            lora_alpha=config["lora_alpha"],
            lora_dropout=config.get("lora_dropout", 0.0),
            target_modules=config["target_modules"],
            modules_to_save=config.get("modules_to_save"),
            use_rslora=config.get("use_rslora", False),
            init_lora_weights=config.get("init_lora_weights", True),
            task_type=config.get("task_type"),
            base_model_name_or_path=config.get("base_model_name_or_path"),
            exclude_modules=config.get("exclude_modules") or [],
        )


class LoRALinear(nn.Module):
    """An `nn.Linear` plus a trainable low-rank update: `base_layer(x) + scaling * lora_B(lora_A(dropout(x)))`.

    The attribute names (`base_layer`, `lora_A`, `lora_B`) give state-dict keys that are PEFT's keys without the
    adapter name, which is what PEFT writes to disk.
    """

    def __init__(self, base_layer: nn.Linear, r: int = 8, lora_alpha: float = 8, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: bool | str = True):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"LoRALinear wraps nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.in_features, self.out_features, self.r = base_layer.in_features, base_layer.out_features, r
        self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        # Created in the same order as PEFT so that one seed gives PEFT's A too.
        weight = base_layer.weight
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=weight.device, dtype=weight.dtype)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=weight.device, dtype=weight.dtype)
        self.reset_lora_parameters(init_lora_weights)
        self.merged = False
        self.disabled = False

    def reset_lora_parameters(self, init_lora_weights: bool | str = True):
        if init_lora_weights is False:
            return
        if init_lora_weights == "gaussian":
            nn.init.normal_(self.lora_A.weight, std=1 / self.r)
        else:
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)  # (..., out_features)
        if self.merged or self.disabled:
            return result
        # B(A·x): two thin matmuls through the rank-r bottleneck; (B·A) is never formed (see `lora_matmul_cost`).
        # One expression on purpose: a named `update = ...` would keep that (..., out_features) tensor alive during
        # the addition, one extra activation per layer at the memory peak.
        return result + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling  # (..., r) -> (..., out)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling  # (out_features, in_features)

    @torch.no_grad()
    def merge(self):
        """Fold the update into W0, so inference costs one matmul."""
        if not self.merged:
            self.base_layer.weight += self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self):
        if self.merged:
            self.base_layer.weight -= self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, scaling={self.scaling}"


class LoRAEmbedding(nn.Module):
    """An `nn.Embedding` plus a trainable low-rank update of its table: `base_layer(ids) + scaling * A[:, ids]^T B^T`.

    PEFT's layout and initialisation: `lora_embedding_A` (r, num_embeddings) starts at zero, `lora_embedding_B`
    (embedding_dim, r) from a normal distribution (the reverse of `LoRALinear`, as in the LoRA paper's code). It lets a
    frozen model learn a direction per word, which a classifier trained from a small masked-LM needs most.
    """

    def __init__(self, base_layer: nn.Embedding, r: int = 8, lora_alpha: float = 8, use_rslora: bool = False,
                 init_lora_weights: bool | str = True):
        super().__init__()
        if not isinstance(base_layer, nn.Embedding):
            raise TypeError(f"LoRAEmbedding wraps nn.Embedding, got {type(base_layer).__name__}")
        self.base_layer, self.r = base_layer, r
        self.num_embeddings, self.embedding_dim = base_layer.num_embeddings, base_layer.embedding_dim
        self.scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
        weight = base_layer.weight
        # Drawn as PEFT draws them (then reset), so that one seed gives PEFT's values too
        self.lora_embedding_A = nn.Parameter(torch.randn(r, self.num_embeddings).to(weight.device, weight.dtype))
        self.lora_embedding_B = nn.Parameter(torch.randn(self.embedding_dim, r).to(weight.device, weight.dtype))
        if init_lora_weights is not False:
            nn.init.zeros_(self.lora_embedding_A)
            nn.init.normal_(self.lora_embedding_B)
        self.merged = False
        self.disabled = False

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(input_ids)  # (..., embedding_dim)
        if self.merged or self.disabled:
            return result
        after_a = F.embedding(input_ids, self.lora_embedding_A.T, padding_idx=self.base_layer.padding_idx)  # (..., r)
        return result + (after_a @ self.lora_embedding_B.T) * self.scaling  # (..., embedding_dim)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_embedding_B @ self.lora_embedding_A).T * self.scaling  # (num_embeddings, embedding_dim)

    merge = LoRALinear.merge
    unmerge = LoRALinear.unmerge

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, r={self.r}"


LORA_LAYERS = (LoRALinear, LoRAEmbedding)


def _is_lora_parameter(name: str) -> bool:
    return any(part in f"{name}." for part in (".lora_A.", ".lora_B.", ".lora_embedding_A.", ".lora_embedding_B."))


def input_embedding_name(model: nn.Module) -> str:
    """The full name of the model's input embedding (`model.get_input_embeddings()`), e.g. to add it to the targets."""
    embeddings = model.get_input_embeddings()
    return next(name for name, module in model.named_modules() if module is embeddings)


def family_target_modules(model: nn.Module, embeddings: bool = False) -> list[str]:
    """The family's default LoRA targets for `model`, plus its input embedding with `embeddings=True`."""
    targets = DEFAULT_TARGET_MODULES[model.config.model_type]
    return targets + [input_embedding_name(model)] if embeddings else targets


def _is_head(name: str) -> bool:
    return name.split(".")[-1] in HEAD_NAMES


def _name_matches(name: str, patterns: list[str] | str) -> bool:
    if isinstance(patterns, str):
        return re.fullmatch(patterns, name) is not None
    return any(name == p or name.endswith("." + p) for p in patterns)


def find_target_modules(model: nn.Module, target_modules: list[str] | str | None = None,
                        exclude_modules: list[str] | str = ()) -> list[str]:
    """Full names of the `nn.Linear` layers (and `nn.Embedding` layers named explicitly) LoRA should wrap, with the
    matching rules of PEFT.

    按名称选择要加 LoRA 的线性层（以及点名的嵌入层）：精确名/后缀（列表）、正则（字符串，需匹配完整名）或 "all-linear"（除输出头外的全部线性层）。
    """
    if target_modules is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in DEFAULT_TARGET_MODULES:
            raise ValueError(f"no default LoRA target modules for model_type={model_type!r}; pass target_modules")
        target_modules = DEFAULT_TARGET_MODULES[model_type]
    names = []
    for name, module in model.named_modules():
        if (not isinstance(module, (nn.Linear, nn.Embedding)) or isinstance(module, LORA_LAYERS)
                or ".lora_" in f".{name}"):
            continue
        if exclude_modules and _name_matches(name, exclude_modules if isinstance(exclude_modules, str)
                                             else list(exclude_modules)):
            continue
        if target_modules == "all-linear":
            if isinstance(module, nn.Linear) and not _is_head(name):
                names.append(name)
        elif _name_matches(name, target_modules):
            names.append(name)
    if not names:
        raise ValueError(f"target_modules={target_modules!r} matched no nn.Linear or nn.Embedding layer of "
                         f"{type(model).__name__}")
    return names


def _replace_module(model: nn.Module, name: str, new: nn.Module):
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear | LoRAEmbedding]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LORA_LAYERS)}


def add_lora(model: nn.Module, settings: LoraSettings | None = None, freeze: bool = True) -> nn.Module:
    """Wrap the target linear layers in `LoRALinear` (in place) and train only the adapters and `modules_to_save`.

    给目标线性层加上 LoRA（原地修改），并冻结除适配器（与 `modules_to_save`，如分类头 `score`）以外的全部参数。
    """
    settings = settings or LoraSettings()
    if lora_layers(model):
        raise ValueError("the model already has LoRA layers; unload_lora(model) first")
    if settings.target_modules is None:  # the family's default, written out (as PEFT does) in adapter_config.json
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type in DEFAULT_TARGET_MODULES:
            settings = replace(settings, target_modules=DEFAULT_TARGET_MODULES[model_type])
    for name in find_target_modules(model, settings.target_modules, settings.exclude_modules):
        module = model.get_submodule(name)
        if isinstance(module, nn.Embedding):  # no dropout on ids, as PEFT
            layer = LoRAEmbedding(module, settings.r, settings.lora_alpha, settings.use_rslora,
                                  settings.init_lora_weights)
        else:
            layer = LoRALinear(module, settings.r, settings.lora_alpha, settings.lora_dropout, settings.use_rslora,
                               settings.init_lora_weights)
        _replace_module(model, name, layer)
    model.lora_settings = settings
    if freeze:
        mark_only_lora_as_trainable(model, settings.modules_to_save)
    return model


def _modules_to_save_names(model: nn.Module, modules_to_save: list[str] | None) -> list[str]:
    if not modules_to_save:
        return []
    return [name for name, _ in model.named_modules() if name and _name_matches(name, modules_to_save)]


def mark_only_lora_as_trainable(model: nn.Module, modules_to_save: list[str] | None = None):
    for name, param in model.named_parameters():
        param.requires_grad = _is_lora_parameter(name)
    for name in _modules_to_save_names(model, modules_to_save):
        for param in model.get_submodule(name).parameters():
            param.requires_grad = True


def count_trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a tied weight is counted once."""
    seen, trainable, total = set(), 0, 0
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


def _refuse_tied_merge(model: nn.Module) -> None:
    """Merging a LoRA of an embedding whose table is also the LM head (tied) would change the head too."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, layer in lora_layers(model).items():
        if isinstance(layer, LoRAEmbedding) and output is not None and output.weight is layer.base_layer.weight:
            raise ValueError(f"{name} is tied to the LM head: merging its LoRA would change the head too; keep the "
                             "adapter unmerged (or save it with save_lora_adapter)")


def merge_lora(model: nn.Module) -> nn.Module:
    _refuse_tied_merge(model)
    for layer in lora_layers(model).values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    for layer in lora_layers(model).values():
        layer.unmerge()
    return model


@contextmanager
def lora_disabled(model: nn.Module):
    """Run the base model alone inside the `with` block (like PEFT's `disable_adapter()`), e.g. as a reference."""
    layers = list(lora_layers(model).values())
    merged = [layer for layer in layers if layer.merged]
    for layer in merged:
        layer.unmerge()
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False
        for layer in merged:
            layer.merge()


def unload_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Put the plain `nn.Linear` / `nn.Embedding` layers back (merged with their update unless `merge=False`): a
    normal model again.

    卸载 LoRA：把每个 LoRALinear 换回普通 nn.Linear（默认先合并权重），得到与原模型结构相同、可直接 save_pretrained 的模型。
    """
    if merge:
        _refuse_tied_merge(model)
    for name, layer in lora_layers(model).items():
        if merge:
            layer.merge()
        else:
            layer.unmerge()
        _replace_module(model, name, layer.base_layer)
    if hasattr(model, "lora_settings"):
        del model.lora_settings
    for param in model.parameters():
        param.requires_grad = True
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter weights and `modules_to_save` weights under PEFT's on-disk key names."""
    settings = getattr(model, "lora_settings", None)
    if settings is None:
        raise ValueError("the model has no LoRA adapter (call add_lora or load_lora_adapter first)")
    state = {f"{PEFT_PREFIX}{name}": p for name, p in model.named_parameters() if _is_lora_parameter(name)}
    for name in _modules_to_save_names(model, settings.modules_to_save):
        for param_name, param in model.get_submodule(name).named_parameters():
            state[f"{PEFT_PREFIX}{name}.{param_name}"] = param
    return {key: tensor.detach().contiguous() for key, tensor in state.items()}


def save_lora_adapter(model: nn.Module, save_directory: str | os.PathLike, overwrite: bool = False):
    """Write `adapter_config.json` and `adapter_model.safetensors` exactly as `PeftModel.save_pretrained` does.

    以 PEFT 格式保存适配器，`PeftModel.from_pretrained(base_model, save_directory)` 可直接加载。
    """
    weights_path = os.path.join(save_directory, ADAPTER_WEIGHTS_NAME)
    if os.path.exists(weights_path) and not overwrite:
        raise FileExistsError(f"{weights_path} exists; pass overwrite=True to replace it")
    os.makedirs(save_directory, exist_ok=True)
    state = lora_state_dict(model)
    with open(os.path.join(save_directory, ADAPTER_CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(model.lora_settings.to_peft_dict(), f, indent=2)
    save_file(state, weights_path, metadata={"format": "pt"})


def load_lora_adapter(model: nn.Module, adapter_directory: str | os.PathLike, freeze: bool = True) -> nn.Module:
    """Add LoRA layers to a plain model and fill them from a PEFT-format folder (saved by PEFT or by this file).

    从 PEFT 格式目录加载适配器到普通模型（无论由 PEFT 还是本文件保存）。
    """
    config_path = os.path.join(adapter_directory, ADAPTER_CONFIG_NAME)
    weights_path = os.path.join(adapter_directory, ADAPTER_WEIGHTS_NAME)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: not a PEFT LoRA adapter folder")
    with open(config_path, encoding="utf-8") as f:
        settings = LoraSettings.from_peft_dict(json.load(f), source=config_path)
    add_lora(model, settings, freeze=freeze)
    expected = lora_state_dict(model)
    loaded = load_file(weights_path)
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        named = dict(model.named_parameters())
        for key, tensor in loaded.items():
            param = named[key[len(PEFT_PREFIX):]]
            if param.shape != tensor.shape:
                raise ValueError(f"{weights_path}: {key} has shape {tuple(tensor.shape)}, model has {tuple(param.shape)}")
            param.copy_(tensor)
    return model


def lora_matmul_cost(out_features: int, in_features: int, r: int, num_tokens: int, bytes_per_element: int = 4) -> dict:
    """FLOPs and extra memory of the LoRA update for `num_tokens` inputs, computed two ways.

    - "B(Ax)": `A·x` then `B·(A·x)`: 2·n·r·(in + out) FLOPs, one (n, r) intermediate.
    - "(BA)x": form `B·A` first (2·out·r·in FLOPs, an (out, in) matrix as large as W0), then a full matmul with x
      (2·n·in·out FLOPs).
    Counting one multiply-add as 2 FLOPs, as `torch.utils.flop_counter` does.

    计算 LoRA 更新的代价：先 A·x 再乘 B（低秩瓶颈）与先算 B·A 再乘 x 的 FLOPs 和额外内存对比。
    """
    n = num_tokens
    bax_flops = 2 * n * r * in_features + 2 * n * r * out_features
    ba_first_flops = 2 * out_features * r * in_features + 2 * n * in_features * out_features
    return {
        "B(Ax)": {"flops": bax_flops, "extra_bytes": n * r * bytes_per_element},
        "(BA)x": {"flops": ba_first_flops, "extra_bytes": out_features * in_features * bytes_per_element},
        "flops_ratio": ba_first_flops / bax_flops,
        "memory_ratio": (out_features * in_features) / (n * r),
    }
