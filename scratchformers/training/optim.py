"""Muon for the hidden weight matrices and AdamW for everything else, as one optimizer that `Trainer` can drive.

Muon (Jordan et al., 2024) replaces each weight matrix's momentum by its nearest semi-orthogonal matrix (a few
Newton-Schulz iterations) before the update, so every direction of the matrix moves at a similar rate. It is meant for
the 2-D weights inside the blocks; embeddings, the output head, norm gains and biases keep AdamW. The halves are
PyTorch's `torch.optim.Muon` (its Newton-Schulz run in float32 on CPU, see `Muon`) and `torch.optim.AdamW`;
`MuonAdamW` holds them together so that one learning-rate scheduler, gradient clipping and checkpoints see one
optimizer.
Muon 优化器：对块内的二维权重矩阵做正交化动量更新；嵌入、输出头、归一化增益和偏置仍用 AdamW。
"""

from __future__ import annotations

import math

import torch


def muon_parameter_names(model) -> list[str]:
    """Names of the weight matrices Muon should train: 2-D parameters outside the embeddings and the output head."""
    skip = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            skip.update(id(p) for p in module.parameters())
    for module in model.modules():  # learned position embeddings (GPT's wpe) are embeddings too
        if isinstance(module, torch.nn.Embedding):
            skip.update(id(p) for p in module.parameters())
    return [name for name, p in model.named_parameters() if p.requires_grad and p.ndim == 2 and id(p) not in skip]


class Muon(torch.optim.Muon):
    """`torch.optim.Muon` whose Newton-Schulz iterations run in `ns_dtype` (float32 by default).

    torch runs them in bfloat16, which tensor cores make cheap on a GPU; a CPU without bfloat16 matrix units runs
    them many times slower than in float32 (the llama2-tiny speedrun step took 650 ms instead of 76 ms). With
    `ns_dtype=torch.bfloat16` every step equals torch's. Same hyperparameters and optimizer state as torch's.
    """

    def __init__(self, params, *args, ns_dtype: torch.dtype = torch.float32, **kwargs):
        super().__init__(params, *args, **kwargs)
        self.ns_dtype = ns_dtype

    @staticmethod
    def orthogonalize(grad: torch.Tensor, ns_coefficients, ns_steps: int, eps: float, dtype: torch.dtype):
        """The nearest semi-orthogonal matrix to `grad`, roughly (quintic Newton-Schulz, as torch computes it)."""
        a, b, c = ns_coefficients
        x = grad.to(dtype)
        if grad.size(0) > grad.size(1):
            x = x.T  # (m, n) with m <= n: the Gram matrix is the smaller one
        x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
        for _ in range(ns_steps):
            gram = x @ x.T  # (m, m)
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)  # a·x + (b·G + c·G²)·x
        return x.T if grad.size(0) > grad.size(1) else x

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = self.orthogonalize(update, group["ns_coefficients"], group["ns_steps"], group["eps"],
                                            self.ns_dtype)
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(update, alpha=-_muon_lr(lr, group["adjust_lr_fn"], param.shape))
        return loss


def _muon_lr(lr: float, adjust_lr_fn: str | None, shape) -> float:
    """torch's Muon learning-rate adjustment for a weight of `shape` (`torch.optim._muon._adjust_lr`)."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


class MuonAdamW(torch.optim.Optimizer):
    """`Muon` on `muon_params`, `torch.optim.AdamW` on `adamw_groups`, stepped and saved together.

    Muon's step is scaled to AdamW's update size (`adjust_lr_fn="match_rms_adamw"`), so one learning rate (and one
    schedule over `param_groups`) serves both. `state_dict()` holds both optimizers' states.
    """

    def __init__(self, muon_params, adamw_groups, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999),
                 eps: float = 1e-8, momentum: float = 0.95):
        muon_params = list(muon_params)
        if not muon_params:
            raise ValueError("MuonAdamW needs at least one weight matrix for Muon")
        self.muon = Muon(
            muon_params, lr=lr, weight_decay=weight_decay, momentum=momentum, adjust_lr_fn="match_rms_adamw",
            ns_dtype=torch.float32 if muon_params[0].device.type == "cpu" else torch.bfloat16,
        )
        self.adamw = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        every = [p for group in self.muon.param_groups + self.adamw.param_groups for p in group["params"]]
        super().__init__(every, {"lr": lr})
        self.param_groups = self.muon.param_groups + self.adamw.param_groups  # the same dicts: schedulers reach both

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self):
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict):
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        self.param_groups = self.muon.param_groups + self.adamw.param_groups


def build_muon_adamw(model, args, decay_parameter_names) -> MuonAdamW:
    """A `MuonAdamW` for `model` from `TrainingArguments` (learning rate, weight decay, Adam betas and epsilon)."""
    muon_names = set(muon_parameter_names(model))
    decay_names = set(decay_parameter_names)
    muon, decay, no_decay = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name in muon_names:
            muon.append(param)
        else:
            (decay if name in decay_names else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return MuonAdamW(
        muon, [g for g in groups if g["params"]], lr=args.learning_rate, weight_decay=args.weight_decay,
        betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
    )
