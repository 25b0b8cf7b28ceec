"""Argument dataclasses of each job. `HfArgumentParser` turns them (plus `TrainingArguments`) into CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenizerArguments:
    """Train a byte-level BPE tokenizer (`scratchformers train-tokenizer`)."""

    train_files: list[str] = field(default_factory=list, metadata={"help": "Text/JSONL/CSV files to train on."})
    output_dir: str = field(default="tokenizer", metadata={"help": "Folder the tokenizer is saved to."})
    vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size, special tokens included."})
    tokenizer_type: str = field(
        default="bpe",
        metadata={"help": "'bpe' (byte-level BPE), 'char' (one token per character seen) or 'wordpiece' (BERT's).",
                  "choices": ["bpe", "char", "wordpiece"]},
    )
    min_frequency: int = field(default=2, metadata={"help": "Minimum count of a merged pair (bpe) or a character (char)."})
    text_column: str = field(default="text", metadata={"help": "Column/field holding the text in JSONL/CSV."})
    split_by: str = field(
        default="paragraph",
        metadata={"help": "Documents of .txt files: 'paragraph' (blank line), 'line', 'document' (as pretrain)."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Write over a folder that already holds a tokenizer."})


@dataclass
class SplitTextArguments:
    """Cut one text file into train and validation files at a character position (`scratchformers split-text`)."""

    input_file: str | None = field(
        default=None, metadata={"help": "The UTF-8 text file, or an http(s) URL of one, to split (needed)."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder for train.txt and validation.txt (needed)."})
    validation_percentage: float = field(
        default=10.0, metadata={"help": "The last this-many percent of the characters become validation.txt."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace train.txt / validation.txt already there."})


@dataclass
class ModelArguments:
    """Which model to train: a saved folder, or a fresh one built from a preset."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved model folder to continue from. Default: a new model from --preset."}
    )
    preset: str = field(
        default="gpt-micro",
        metadata={"help": "Preset of a new model (gpt-micro, llama2-tiny, ...; bert-tiny, bert-mini, ... pretrain a "
                  "BERT encoder with masked-LM)."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config fields of a new model, e.g. 'num_hidden_layers=2,tie_word_embeddings=true'."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Tokenizer folder. Default: the model folder's, else a new one trained on --train_files."},
    )
    vocab_size: int = field(default=8000, metadata={"help": "Vocab size of a tokenizer trained on the fly."})
    tokenizer_type: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer trained on the fly: 'bpe' (byte-level BPE; GPT's and LLaMA2's default), 'char' "
            "(one token per character seen, bytes for others) or 'wordpiece' (BERT's default).",
            "choices": ["bpe", "char", "wordpiece"],
        },
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "'sdpa' (default) or 'eager'."})


@dataclass
class PretrainDataArguments:
    """Pretraining corpus and run options."""

    train_files: list[str] = field(
        default_factory=list, metadata={"help": "Training .txt/.jsonl/.csv files or saved dataset folders."}
    )
    validation_files: list[str] = field(
        default_factory=list, metadata={"help": "Validation files. Default: --validation_split_percentage of train."}
    )
    validation_split_percentage: float = field(default=5.0, metadata={"help": "Percent of train held out."})
    text_column: str = field(default="text", metadata={"help": "Column/field holding the text in JSONL/CSV."})
    split_by: str = field(
        default="paragraph", metadata={"help": "Documents of .txt files: 'paragraph' (blank line), 'line', 'document'."}
    )
    block_size: int = field(default=256, metadata={"help": "Tokens per training block (<= model positions)."})
    window_sampling: str = field(
        default="random",
        metadata={
            "help": "'random': each epoch's windows start anywhere in the tokens, as in nanoGPT (less "
            "overfitting); 'fixed': the same blocks every epoch.",
            "choices": ["random", "fixed"],
        },
    )
    num_proc: int | None = field(default=None, metadata={"help": "Processes for dataset.map (tokenization)."})
    time_budget: str | None = field(
        default=None,
        metadata={
            "help": "Train for this much wall-clock (120s, 2m, 10m, 1h); the learning-rate schedule (warmup as a "
            "fraction: --warmup_steps 0.02) follows the time spent."
        },
    )
    mlm_probability: float = field(
        default=0.15, metadata={"help": "BERT presets: the share of tokens masked and predicted (BERT: 0.15)."}
    )
    whole_word_mask: bool = field(
        default=False,
        metadata={"help": "BERT presets: mask every WordPiece of a word together (each CJK character is a word)."},
    )
    dropout_after_epochs: float = field(
        default=0.0,
        metadata={
            "help": "Late dropout: the model's dropout layers stay off for this many epochs, then work at their "
            "configured rates. 0: from the start."
        },
    )
    use_muon: bool = field(
        default=False,
        metadata={
            "help": "Muon (scaled to AdamW's step size: same --learning_rate) for the hidden weight matrices, "
            "AdamW for embeddings, head, norms and biases."
        },
    )
    distill_from: list[str] = field(
        default_factory=list,
        metadata={"help": "Teachers to distill: model folders or Hub ids with this tokenizer (a new model "
                          "takes the first's)."},
    )
    distill_alpha: float = field(
        default=0.75, metadata={"help": "The teachers' share of the loss (the rest: cross-entropy)."}
    )
    distill_temperature: float = field(default=1.0, metadata={"help": "Distillation temperature."})
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Periodic evaluations use the first N validation blocks (the final figures use all)."},
    )
    reference_points: list[str] = field(
        default_factory=list,
        metadata={"help": "Results drawn on loss_vs_time.png, as LABEL@TIME=NATS_PER_CHAR, e.g. 'nanoGPT@1m35s=1.886'."},
    )
    sample_prompts: list[str] = field(
        default_factory=lambda: [""], metadata={"help": "Prompts sampled at the end ('' starts from <|endoftext|>)."}
    )
    sample_max_new_tokens: int = field(default=80, metadata={"help": "Length of the samples printed at the end (0: none)."})
    sample_max_chars: int | None = field(
        default=None, metadata={"help": "Cut each sample to this many characters (samples.txt keeps the same)."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Write over an --output_dir that holds results."})


@dataclass
class SFTArguments:
    """Supervised fine-tuning on instruction/input/output or chat `messages` JSONL."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "The pretrained model folder (needed)."})
    train_file: str | None = field(default=None, metadata={"help": "SFT JSONL file."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation JSONL. Default: split of train."})
    validation_split_percentage: float = field(default=5.0, metadata={"help": "Percent of train held out."})
    max_length: int | None = field(
        default=None, metadata={"help": "Samples are truncated to this many tokens. Default: the model's context."}
    )
    num_proc: int | None = field(default=None, metadata={"help": "Processes for dataset.map (tokenization)."})
    distill_from: list[str] = field(
        default_factory=list,
        metadata={"help": "Teachers to distill: model folders or Hub ids with the model's tokenizer."},
    )
    distill_alpha: float = field(
        default=0.75, metadata={"help": "The teachers' share of the loss (the rest: cross-entropy)."}
    )
    distill_temperature: float = field(default=1.0, metadata={"help": "Distillation temperature."})
    sample_prompts: list[str] = field(default_factory=list, metadata={"help": "User messages answered at the end."})
    sample_max_new_tokens: int = field(default=80, metadata={"help": "Length of the answers printed at the end (0: none)."})
    overwrite: bool = field(default=False, metadata={"help": "Write over an --output_dir that holds results."})


@dataclass
class DPOArguments:
    """Direct preference optimisation of an SFT model on prompt/chosen/rejected pairs (TRL's DPOTrainer)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "The SFT model folder (needed)."})
    train_file: str | None = field(
        default=None, metadata={"help": "Preference pairs: JSONL with prompt (or instruction), chosen, rejected."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Held-out pairs. Default: split of train."})
    validation_split_percentage: float = field(default=5.0, metadata={"help": "Percent of train held out."})
    implementation: str = field(
        default="trl",
        metadata={"help": "'trl': TRL's DPO loss; 'hand': scratchformers.training.dpo.dpo_loss (the same loss written "
                          "out; everything else is TRL's).", "choices": ["trl", "hand"]},
    )
    lora: str = field(
        default="none",
        metadata={"help": "'none': train every weight (the reference is a frozen copy); 'peft': PEFT LoRA (saves the "
                          "adapter; the reference is the model with the adapter off); 'hand': scratchformers.lora "
                          "(saves the merged model and adapter/).", "choices": ["none", "peft", "hand"]},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    overwrite: bool = field(default=False, metadata={"help": "Write over an --output_dir that holds results."})


@dataclass
class GRPOArguments:
    """GRPO on prompts with verifiable answers (TRL's GRPOTrainer)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "The SFT model folder (needed)."})
    train_file: str | None = field(default=None, metadata={"help": "JSONL of prompt / answer rows (or --task)."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Held-out prompt / answer rows, scored greedily before and after training."}
    )
    task: str | None = field(
        default=None, metadata={"help": "A generated task instead of --train_file: 'counting' (Count from A to B.)."}
    )
    num_prompts: int = field(default=100, metadata={"help": "Training prompts of --task (all different)."})
    num_eval_prompts: int = field(default=50, metadata={"help": "Held-out prompts of --task (none in training)."})
    time_budget: str | None = field(
        default=None,
        metadata={"help": "Train for this much wall-clock (e.g. 15m): training stops when it is spent and the "
                          "learning-rate schedule follows the time spent (as for pretrain)."},
    )
    eval_every_steps: int = field(
        default=0, metadata={"help": "Score the held-out prompts every N steps too (logged as heldout_reward)."}
    )
    eval_samples: int = field(
        default=8,
        metadata={"help": "Also score this many answers sampled per held-out prompt at --temperature (the expected "
                          "reward GRPO optimises); 0: greedy only."},
    )
    reward: str = field(
        default="exact",
        metadata={"help": "'exact': 1 when the answer is exactly the expected text; 'final_number': 1 when its final "
                          "number (GSM8K's #### N, else the last number) is; 'similarity': difflib's 0..1 ratio. "
                          "Several, comma-separated (exact,similarity), are added up for training (weights: "
                          "--reward_weights); the held-out score is the first."},
    )
    lora: str = field(default="none", metadata={"help": "'none', 'peft' or 'hand' (as for dpo).",
                                                 "choices": ["none", "peft", "hand"]})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    overwrite: bool = field(default=False, metadata={"help": "Write over an --output_dir that holds results."})


@dataclass
class PreferenceBuildArguments:
    """Build DPO preference pairs from SFT rows (`scratchformers build-preferences`)."""

    input_file: str | None = field(default=None, metadata={"help": "SFT file: instruction / input / output rows."})
    output_file: str | None = field(default=None, metadata={"help": "JSONL of prompt / chosen / rejected to write."})
    rejected: str = field(
        default="auto",
        metadata={"help": "'number': the output with a wrong final '#### N' (GSM8K); 'other': another row's output; "
                          "'sampled': the SFT model's own answer where it is wrong (--model_name_or_path), else "
                          "auto; 'auto': number where the output has one, else other.",
                  "choices": ["auto", "number", "other", "sampled"]},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "SFT model folder whose sampled answers are rejected (--rejected sampled)."}
    )
    max_new_tokens: int = field(default=256, metadata={"help": "Longest sampled answer, in tokens (sampled)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the model's answers."})
    limit: int | None = field(default=None, metadata={"help": "Use the first N rows only."})
    seed: int = field(default=0, metadata={"help": "Seed of the wrong numbers, the other rows drawn and the samples."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output_file."})


@dataclass
class ClassifyArguments:
    """Sequence classification fine-tuning from CSV files with columns text,label."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained model folder. Default: a new model from --preset."}
    )
    preset: str = field(default="gpt-micro", metadata={"help": "Preset of a new model when no folder is given."})
    config_overrides: str | None = field(default=None, metadata={"help": "Config fields of a new model."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "Default: the model folder's."})
    train_file: str | None = field(default=None, metadata={"help": "Training CSV (text,label)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation CSV."})
    test_file: str | None = field(default=None, metadata={"help": "Test CSV, evaluated at the end."})
    text_column: str = field(default="text", metadata={"help": "CSV column with the text."})
    label_column: str = field(default="label", metadata={"help": "CSV column with the label."})
    labels: list[str] = field(default_factory=list, metadata={"help": "The label set. Default: labels of train."})
    max_length: int | None = field(
        default=None,
        metadata={"help": "Texts are truncated to this many tokens. Default: the model's context, at most 256."},
    )
    lora: str = field(
        default="none",
        metadata={"help": "'none': train every weight; 'peft': PEFT LoRA (saves the adapter, loadable by "
                  "AutoModelForSequenceClassification); 'hand': scratchformers.lora (saves the merged model, the "
                  "adapter in adapter/). Both adapt every linear layer of the blocks and train the head in full.",
                  "choices": ["none", "peft", "hand"]},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_embeddings: bool = field(
        default=False,
        metadata={"help": "Also adapt the input embedding with LoRA (a direction per word: what a classifier on a small "
                          "masked-LM base needs most; see benchmarks/README.md)."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Write over an --output_dir that holds results."})


@dataclass
class GenerateArguments:
    """Sample text from a saved model, streaming tokens as they come."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "Saved model folder (needed)."})
    prompt: str = field(default="", metadata={"help": "Text to continue (or the user message with --chat)."})
    chat: bool = field(default=False, metadata={"help": "Wrap the prompt in the chat template (SFT models)."})
    max_new_tokens: int = field(default=100, metadata={"help": "Tokens to generate."})
    do_sample: bool = field(default=True, metadata={"help": "Sample (True) or greedy/beam search (False)."})
    temperature: float = field(default=0.8, metadata={"help": "Softmax temperature when sampling."})
    top_k: int = field(default=50, metadata={"help": "Sample among the k most likely tokens (0 = all)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling: smallest set with this mass."})
    num_beams: int = field(default=1, metadata={"help": "Beam search width (streaming needs 1)."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "> 1 discourages repeated tokens."})
    no_repeat_ngram_size: int = field(default=0, metadata={"help": "Forbid repeating n-grams of this size."})
    num_return_sequences: int = field(default=1, metadata={"help": "Samples per prompt (streaming needs 1)."})
    seed: int = field(default=0, metadata={"help": "Random seed of sampling."})
    stream: bool = field(default=True, metadata={"help": "Print tokens as they are generated (TextStreamer)."})


@dataclass
class DemoArguments:
    """The whole path on a generated corpus: tokenizer, pretraining, SFT, generation."""

    output_dir: str = field(default="demo_output", metadata={"help": "Folder of the demo's results."})
    overwrite: bool = field(default=False, metadata={"help": "Write over a folder that is not a previous demo."})
    preset: str = field(default="gpt-micro", metadata={"help": "Model preset."})
    pretrain_steps: int = field(default=800, metadata={"help": "Pretraining optimizer steps."})
    sft_steps: int = field(default=300, metadata={"help": "SFT optimizer steps."})
    num_stories: int = field(default=3000, metadata={"help": "Generated stories in the corpus."})
    num_checks: int = field(
        default=20, metadata={"help": "Fresh prompts (half counting, half stories) scored after SFT."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the corpus, initialization and sampling."})
    quick: bool = field(default=False, metadata={"help": "A few steps only (a smoke test, samples not learned)."})
