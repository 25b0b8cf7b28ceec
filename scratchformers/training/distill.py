"""Knowledge distillation: a student learns the next-token distribution of one or more teacher models.

The student's loss is `alpha x KL(teachers || student) + (1 - alpha) x the usual cross-entropy`, where the teachers'
distribution is the mean of their next-token probabilities (one teacher, or an ensemble: Hinton et al., 2015,
"Distilling the Knowledge in a Neural Network"). `ScratchTrainer(teachers=...)` applies it in training steps only,
so evaluation losses stay the plain cross-entropy and compare with any other run.
"""

from __future__ import annotations

import math

import torch

from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from ..families import FAMILIES
from ..tokenization_scratch import load_tokenizer


def check_distill_settings(alpha: float, temperature: float) -> None:
    """`alpha` is the soft loss's share (0 < alpha <= 1), `temperature` divides every logit (> 0)."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"--distill_alpha must be in (0, 1] (the teachers' share of the loss), got {alpha}")
    if not temperature > 0.0:
        raise ValueError(f"--distill_temperature must be > 0, got {temperature}")


def load_teachers(names, tokenizer, block_size: int | None = None, device=None) -> list:
    """The teacher models of `--distill_from` (folders or Hub repo ids), frozen, in eval mode, on `device`.

    Each must be a causal LM with the student's tokenizer (the same vocabulary, id for id) and a context of at least
    `block_size` tokens: of any family (a GPT teacher for a LLaMA2 student works), or one of transformers' own
    (`LlamaForCausalLM` converted by `hub_scripts`, ...).
    加载蒸馏的教师模型：必须是因果语言模型，与学生使用同一分词器，上下文不短于训练块长。
    """
    from .common import check_model_fits, load_config, load_pretrained  # common's Trainer imports this module

    teachers = []
    vocabulary = tokenizer.get_vocab()
    for name in names:
        model_type = load_config(name).model_type
        if not (FAMILIES[model_type].is_decoder if model_type in FAMILIES
                else model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
            raise ValueError(f"--distill_from {name}: a teacher must be a causal LM (GPT, LLaMA2 or one of "
                             f"transformers'), and model_type {model_type!r} is not")
        teacher_vocabulary = load_tokenizer(name).get_vocab()
        if teacher_vocabulary != vocabulary:
            raise ValueError(
                f"--distill_from {name}: its tokenizer ({len(teacher_vocabulary)} tokens) is not the student's "
                f"({len(vocabulary)} tokens); teacher and student must share one tokenizer (a new student takes the "
                "first teacher's)"
            )
        teacher = load_pretrained(name)
        try:
            check_model_fits(teacher.config, tokenizer, block_size)
        except ValueError as error:
            raise ValueError(f"--distill_from {name}: {error}") from None
        teacher.requires_grad_(False)
        teachers.append(teacher.eval().to(device) if device is not None else teacher.eval())
    return teachers


def mean_log_probs(logits_list) -> torch.Tensor:
    """log of the mean of the softmaxes of several (..., V) logits: the distribution of an ensemble, in float32."""
    log_probs = None
    for logits in logits_list:
        member = logits.float().log_softmax(-1)  # (..., V)
        if log_probs is not None and member.shape != log_probs.shape:
            raise ValueError(f"the models give {log_probs.shape[-1]} and {member.shape[-1]} logits per token: "
                             "an ensemble needs one vocabulary")
        log_probs = member if log_probs is None else torch.logaddexp(log_probs, member)
    if log_probs is None:
        raise ValueError("mean_log_probs needs at least one model's logits")
    if len(logits_list) > 1:
        log_probs = log_probs - math.log(len(logits_list))
    return log_probs


def distillation_loss(student_logits, teacher_logits, labels, temperature: float = 1.0):
    """(sum over the scored positions of T² x KL(teachers' mean distribution || student's), number of positions).

    Logits are (B, T, V), unshifted as a causal LM returns them; the positions scored are those whose next label is
    not -100, as in the cross-entropy. Both distributions are softened by `temperature` T; the T² keeps the
    gradient's size independent of T (Hinton et al., 2015).
    蒸馏损失：教师（多个时取平均概率）与学生下一词分布的 KL 散度之和（乘 T²），以及参与计分的位置数。
    """
    scored = labels[:, 1:] != -100  # (B, T-1)
    log_p = mean_log_probs([logits[:, :-1][scored] / temperature for logits in teacher_logits])  # (N, V)
    student = student_logits[:, :-1][scored] / temperature  # (N, V)
    if student.shape != log_p.shape:
        raise ValueError(f"the teachers give {log_p.shape[-1]} logits per token and the student "
                         f"{student.shape[-1]}: distillation needs one vocabulary")
    log_q = student.float().log_softmax(-1)  # (N, V)
    kl = (log_p.exp() * (log_p - log_q)).sum()
    return kl * temperature**2, scored.sum()
