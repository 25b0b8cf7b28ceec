"""Preference pairs for DPO: read them (JSONL/JSON/CSV/Parquet) and build them from SFT data.

A pair is a prompt, a preferred answer (`chosen`) and a worse one (`rejected`), kept as chat messages the way TRL's
`DPOTrainer` takes them: `{"prompt": [user turn], "chosen": [assistant turn], "rejected": [assistant turn]}`.
偏好数据：读取 prompt/chosen/rejected 三元组，或由 SFT 数据构造（正确答案为 chosen，改错的答案为 rejected）。
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ..corpus import line_of_record, load_records
from .data import check_messages, row_to_messages

# GSM8K's answers end with "#### 42": the final number the exact-answer check compares
FINAL_ANSWER = re.compile(r"####\s*(-?[\d,]*\.?\d+)\s*$")


def _turns(value, role: str, field: str, where: str) -> list[dict]:
    """A string, or a list of messages, as a list of chat messages; the answer sides must be one assistant turn."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where}: '{field}' is empty")
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: '{field}' must be a string or a non-empty list of messages, got {value!r:.80}")
    check_messages(value, where, field)
    if role == "assistant":
        if len(value) != 1 or value[0]["role"] != "assistant":
            raise ValueError(f"{where}: '{field}' must be one assistant message, got roles {[m['role'] for m in value]}")
        if not value[0]["content"].strip():
            raise ValueError(f"{where}: '{field}' is empty")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def pair_from_row(row, where: str = "row") -> dict:
    """One record as a chat pair. The prompt is `prompt` (a string or messages) or Alpaca's `instruction` + `input`;
    `chosen` and `rejected` are strings or one assistant message each. Errors name `where` (file:line)."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [key for key in ("chosen", "rejected") if row.get(key) is None]
    if row.get("prompt") is None and row.get("instruction") is None:
        missing.insert(0, "prompt")
    if missing:
        raise ValueError(f"{where}: a preference pair needs 'prompt' (or 'instruction'), 'chosen' and 'rejected'; "
                         f"missing {missing} (found fields: {sorted(k for k, v in row.items() if v is not None)})")
    if row.get("prompt") is not None:
        prompt = _turns(row["prompt"], "user", "prompt", where)
    else:
        prompt = row_to_messages({**row, "output": "-"}, where)[:-1]  # instruction + input as the user turn
    chosen = _turns(row["chosen"], "assistant", "chosen", where)
    rejected = _turns(row["rejected"], "assistant", "rejected", where)
    if chosen[0]["content"] == rejected[0]["content"]:
        raise ValueError(f"{where}: 'chosen' and 'rejected' are the same text, so there is nothing to prefer")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def read_preference_file(path) -> list[dict]:
    """Every pair of a preference file (JSONL, JSON, CSV/TSV or Parquet); a bad record names its file and line.

    读取偏好数据文件；有问题的记录报告文件名与行号。
    """
    pairs = []
    for file, records in load_records(path):
        for index, row in enumerate(records):
            pairs.append(pair_from_row(row, line_of_record(file, index)))
    if not pairs:
        raise ValueError(f"empty preference file: {path} holds no pairs")
    return pairs


def final_answer(text: str) -> str | None:
    """The number after GSM8K's `####` at the end of an answer (commas dropped), or None."""
    match = FINAL_ANSWER.search(text.strip())
    return match.group(1).replace(",", "") if match else None


def corrupt_final_number(answer: str, rng: random.Random) -> str | None:
    """The answer with its final `#### N` changed to a wrong number (N +- a small step, or N times ten); None when
    the answer has no final number. The worked solution above it stays: only its conclusion is wrong."""
    number = final_answer(answer)
    if number is None:
        return None
    value = float(number)
    wrong = value
    while wrong == value:  # value * 10 is no change for 0
        wrong = rng.choice([value + rng.choice([-2, -1, 1, 2, 3]), value * 10, value + 10,
                            value - 10 if value >= 10 else value + 5])
    text = str(int(wrong)) if wrong == int(wrong) and "." not in number else f"{wrong:g}"
    return FINAL_ANSWER.sub(f"#### {text}", answer.strip())


def prompt_and_answer(row, where: str) -> tuple[str, str]:
    """An SFT row's prompt (its turns before the answer, joined) and its reference answer; errors name `where`."""
    messages = row_to_messages(row, where)
    return "\n".join(m["content"] for m in messages if m["role"] != "assistant"), messages[-1]["content"].strip()


def is_wrong_answer(answer: str, reference: str) -> bool:
    """Whether a model's answer can serve as the rejected one: not empty, not the reference text, and, when the
    reference ends with GSM8K's `#### N`, not ending with the same N (a right answer in other words is not wrong)."""
    answer = answer.strip()
    if not answer or answer == reference.strip():
        return False
    expected = final_answer(reference)
    return expected is None or final_answer(answer) != expected


def build_preference_pairs(rows: list[dict], rejected: str = "auto", seed: int = 0, where=None,
                           model_answers: list[str] | None = None) -> list[dict]:
    """Preference pairs from SFT rows (`instruction`/`input`/`output`): chosen = the reference output; rejected =
    the output with a wrong final number (`"number"`, for GSM8K-style `#### N` answers), another row's output
    (`"other"`: an answer to a different question), the model's own answer (`"sampled"`: `model_answers[i]` for row
    i, used where `is_wrong_answer`, else the `"auto"` choice) or, with `"auto"`, the first of number and other that
    applies. `where(i)` names row i in errors (default "row i+1"). Returns rows of plain strings:
    {"prompt", "chosen", "rejected"}.

    由 SFT 数据构造偏好对：chosen 为参考答案；rejected 为最终数字被改错的答案、另一道题的答案，或 SFT 模型自己采样的错误回答。
    """
    if rejected not in ("auto", "number", "other", "sampled"):
        raise ValueError(f"rejected must be auto, number, other or sampled, got {rejected!r}")
    if (rejected == "sampled") != (model_answers is not None):
        raise ValueError("rejected='sampled' takes the model's answers (model_answers), and only it does")
    if model_answers is not None and len(model_answers) != len(rows):
        raise ValueError(f"{len(model_answers)} model answers for {len(rows)} rows; give one answer per row")
    where = where or (lambda i: f"row {i + 1}")
    rng = random.Random(seed)
    outputs = {str(row.get("output") or "").strip() for row in rows if isinstance(row, dict)} - {""}
    pairs = []
    for index, row in enumerate(rows):
        prompt, chosen = prompt_and_answer(row, where(index))
        if model_answers is not None and is_wrong_answer(model_answers[index], chosen):
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": model_answers[index].strip()})
            continue
        bad = corrupt_final_number(chosen, rng) if rejected != "other" else None
        if bad is None and rejected == "number":
            raise ValueError(f"{where(index)}: the output has no final '#### N' number to corrupt; use --rejected "
                             "other (or auto)")
        if bad is None:
            if len(outputs - {chosen}) == 0:
                raise ValueError(f"{where(index)}: no other row has a different output to serve as the rejected answer")
            while bad is None or bad in ("", chosen):
                bad = str(rows[rng.randrange(len(rows))].get("output") or "").strip()
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": bad})
    return pairs


def sample_rejected_answers(model, tokenizer, rows: list[dict], max_new_tokens: int = 256, temperature: float = 1.0,
                            seed: int = 0, where=None) -> list[str]:
    """One chat answer per SFT row sampled from an SFT model at `temperature`: the `model_answers` of
    `build_preference_pairs(rows, "sampled", ...)`. `where(i)` names row i in errors (default "row i+1")."""
    from ..generation import answer_in_turns, chat_answers

    where = where or (lambda i: f"row {i + 1}")
    prompts = [prompt_and_answer(row, where(index))[0] for index, row in enumerate(rows)]
    answer_in_turns(model, tokenizer)
    return chat_answers(model, tokenizer, prompts, max_new_tokens, samples=1, temperature=temperature, seed=seed)


def own_rejections(pairs: list[dict], model_answers: list[str] | None) -> list[bool]:
    """For each pair of `build_preference_pairs`, whether its rejected answer is the model's own (not a fallback)."""
    if model_answers is None:
        return [False] * len(pairs)
    return [pair["rejected"] == answer.strip() for pair, answer in zip(pairs, model_answers, strict=True)]


def write_preference_pairs(input_file: str, output_file: str, rejected: str = "auto", seed: int = 0,
                           limit: int | None = None, overwrite: bool = False, model_name_or_path: str | None = None,
                           max_new_tokens: int = 256, temperature: float = 1.0) -> tuple[int, int]:
    """`scratchformers build-preferences`: read SFT rows, build pairs, write them as JSONL; returns (pairs written,
    pairs whose rejected answer is the model's own). An existing output file is kept unless `overwrite`;
    `--rejected sampled` samples `model_name_or_path`'s answer to every prompt first."""
    output = Path(output_file)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass --overwrite to replace it, or choose another --output_file")
    if (rejected == "sampled") != bool(model_name_or_path):
        raise ValueError("--rejected sampled needs --model_name_or_path (the SFT model whose wrong answers are "
                         "rejected), and the other choices take no model" + (f"; got {model_name_or_path!r}"
                                                                              if model_name_or_path else ""))
    rows, places = [], []
    for file, records in load_records(input_file):
        for index, row in enumerate(records):
            if limit is None or len(rows) < limit:
                rows.append(row)
                places.append((file, index))
    if not rows:
        raise ValueError(f"{input_file} holds no rows")
    where = lambda i: line_of_record(*places[i])  # noqa: E731
    answers = None
    if rejected == "sampled":
        from .common import load_chat_model

        model, tokenizer = load_chat_model(model_name_or_path, "its answers are sampled in the chat format")
        answers = sample_rejected_answers(model, tokenizer, rows, max_new_tokens, temperature, seed, where)
    pairs = build_preference_pairs(rows, rejected, seed, where=where, model_answers=answers)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps(pair, ensure_ascii=False) + "\n")
    return len(pairs), sum(own_rejections(pairs, answers))
