"""Direct preference optimisation (DPO) on TRL's `DPOTrainer`, with the DPO loss also written out by hand.

DPO (Rafailov et al., 2023) trains the policy to give the preferred answer a higher likelihood, relative to a frozen
reference model, than the rejected one:

    loss = -log sigmoid( beta * [ (log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)) ] )

`implementation="trl"` uses TRL's own loss; `"hand"` computes the same thing with `completion_logps` and `dpo_loss`
below (full logits, log-softmax, gather: readable, not fused). Everything else (data, collator, reference, logging)
is TRL's in both, so the two trainings differ only in the loss code. The reference is what TRL does: with PEFT LoRA
the same model with its adapter disabled, with full weights a frozen copy loaded from the model folder; with our
hand-rolled LoRA, the hand loss disables the adapter (`lora.lora_disabled`) and TRL's loss uses log-probabilities
precomputed before training (then the adapter is zero, so the model is the reference).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from trl import DPOConfig, DPOTrainer

from .. import lora
from .arguments import DPOArguments
from .common import check_model_fits, load_chat_model, lora_for_trl, no_eval_without_data, start_run, train_and_save
from .preferences import read_preference_file


def completion_logps(model, input_ids, attention_mask, completion_mask) -> torch.Tensor:
    """Sum of the log-probabilities of the completion tokens of each row, under `model`.

    input_ids, attention_mask, completion_mask: (B, T); completion_mask is 1 on the answer's tokens.
    返回每行回答部分各词元对数概率之和。
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (B, T, V)
    logits = logits[:, :-1].float()  # position t predicts token t + 1
    targets = input_ids[:, 1:]  # (B, T-1)
    mask = completion_mask[:, 1:].to(logits.dtype)  # (B, T-1)
    token_logps = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (token_logps * mask).sum(-1)  # (B,)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float = 0.1):
    """The sigmoid DPO loss of a batch of pairs (mean over pairs) and each pair's implicit rewards.

    All inputs: (B,) sums of completion log-probabilities. Returns (loss, chosen_rewards, rejected_rewards); a
    reward is beta * (log pi - log ref), and the pair is "won" when chosen_reward > rejected_reward.
    DPO 损失：beta 乘以（策略相对参考模型的对数概率比）之差，取负 log-sigmoid 的均值；同时返回隐式奖励。
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (B,)
    loss = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios)).mean()
    return loss, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


class ScratchDPOTrainer(DPOTrainer):
    """`DPOTrainer` whose loss is TRL's (`implementation="trl"`) or `dpo_loss` above (`"hand"`)."""

    def __init__(self, *args, implementation: str = "trl", **kwargs):
        if implementation not in ("trl", "hand"):
            raise ValueError(f"implementation must be 'trl' or 'hand', got {implementation!r}")
        self.implementation = implementation
        super().__init__(*args, **kwargs)

    def reference(self):
        """A context in which `self.model` is the reference (LoRA off), or None when a separate reference exists."""
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "disable_adapter"):  # PEFT
            return model.disable_adapter()
        if lora.lora_layers(model):
            return lora.lora_disabled(model)
        return None

    def _compute_loss(self, model, inputs, return_outputs):
        if self.implementation == "trl":
            return super()._compute_loss(model, inputs, return_outputs)
        mode = "train" if self.model.training else "eval"
        batch = (inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"])  # [chosen; rejected]
        chosen_logps, rejected_logps = completion_logps(model, *batch).chunk(2)
        if "ref_chosen_logps" in inputs:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            context = self.reference()
            with torch.no_grad(), context if context is not None else contextlib.nullcontext():
                ref_chosen, ref_rejected = completion_logps(self.ref_model if context is None else model,
                                                            *batch).chunk(2)
        loss, chosen_rewards, rejected_rewards = dpo_loss(chosen_logps, rejected_logps, ref_chosen, ref_rejected,
                                                          self.beta)
        metrics = self._metrics[mode]
        gather = self.accelerator.gather
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        return (loss, None) if return_outputs else loss


def run_dpo(args: DPOArguments, training_args: DPOConfig, callbacks=None, verbose: bool = True) -> dict:
    """Align an SFT model with DPO on preference pairs (prompt / chosen / rejected), fully or with LoRA.

    Saves to `output_dir` the model (full weights), the PEFT adapter (`--lora peft`) or the merged model plus
    `adapter/` (`--lora hand`), with the tokenizer; reports the held-out preference accuracy (`eval_rewards/accuracies`).
    用 DPO 在偏好对上对齐 SFT 模型（全参数或 LoRA），报告验证集上偏好 chosen 的比例。
    """
    if not args.model_name_or_path:
        raise ValueError("dpo needs --model_name_or_path (an SFT model folder, e.g. from `scratchformers sft`)")
    if not args.train_file:
        raise ValueError("dpo needs --train_file (JSONL of prompt/chosen/rejected; `scratchformers build-preferences` "
                         "makes one from SFT data)")
    if args.implementation not in ("trl", "hand"):
        raise ValueError(f"--implementation must be trl or hand, got {args.implementation!r}")
    if args.implementation == "hand":  # dpo_loss is the plain sigmoid loss: refuse what it would silently ignore
        unsupported = {"loss_type": (training_args.loss_type, ["sigmoid"]),
                       "f_divergence_type": (training_args.f_divergence_type, "reverse_kl"),
                       "label_smoothing": (training_args.label_smoothing, 0.0),
                       "ld_alpha": (training_args.ld_alpha, None), "use_weighting": (training_args.use_weighting, False)}
        for name, (value, plain) in unsupported.items():
            if value != plain:
                raise ValueError(f"--implementation hand computes the sigmoid DPO loss only: --{name} {value!r} needs "
                                 "--implementation trl")
    resume = start_run(training_args, args.overwrite)

    model, tokenizer = load_chat_model(args.model_name_or_path,
                                       "DPO renders each pair as a user turn and an assistant turn")
    context = model.config.max_position_embeddings
    if training_args.max_length is None:
        training_args.max_length = context
    elif training_args.max_length > context:
        raise ValueError(f"--max_length {training_args.max_length} is longer than the model's context ({context})")
    check_model_fits(model.config, tokenizer, training_args.max_length)

    from datasets import Dataset

    train_pairs = read_preference_file(args.train_file)
    eval_pairs = read_preference_file(args.validation_file) if args.validation_file else None
    if eval_pairs is None and args.validation_split_percentage > 0 and len(train_pairs) >= 20:
        n_eval = max(1, int(len(train_pairs) * args.validation_split_percentage / 100))
        order = torch.randperm(len(train_pairs), generator=torch.Generator().manual_seed(training_args.seed)).tolist()
        eval_pairs = [train_pairs[i] for i in order[:n_eval]]
        train_pairs = [train_pairs[i] for i in order[n_eval:]]
    train_dataset = Dataset.from_list(train_pairs)
    eval_dataset = Dataset.from_list(eval_pairs) if eval_pairs else None
    no_eval_without_data(training_args, eval_dataset)

    peft_config = lora_for_trl(model, args.lora, args.lora_r, args.lora_alpha)
    if args.lora == "hand" and args.implementation == "trl":
        # TRL knows PEFT adapters only: the reference is the model while its new adapter is still zero
        training_args.precompute_ref_log_probs = True
    if verbose and training_args.process_index == 0:
        print(f"[dpo] {len(train_dataset)} training pairs" + (f", {len(eval_dataset)} held out" if eval_dataset else "")
              + f"; loss: {args.implementation}, LoRA: {args.lora}, beta {training_args.beta}")
    trainer = ScratchDPOTrainer(
        model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks, implementation=args.implementation,
    )
    metrics = train_and_save(trainer, resume, "DPO", {"implementation": args.implementation, "lora": args.lora})
    if args.lora == "hand" and trainer.is_world_process_zero():
        from .classify import save_merged_and_adapter

        save_merged_and_adapter(model, training_args.output_dir)
    if verbose and trainer.is_world_process_zero():
        if "eval_rewards/accuracies" in metrics:
            print(f"[dpo] held-out preference accuracy {metrics['eval_rewards/accuracies']:.3f} "
                  f"(margin {metrics['eval_rewards/margins']:.3f})")
        print(f"[dpo] saved to {training_args.output_dir}")
    return metrics
