"""Train byte-level BPE tokenizers on English + Chinese text and print how well they compress (bytes per token).

Trains on the first 90% of the lines of en_tinyshakespeare.txt and zh_hongloumeng.txt together, then measures on
the held-out last 10% of each (in domain) and on en_tinystories_valid_sample.txt / zh_classical_poetry.txt (other
styles of the same languages). Run from the repository root:

    .venv/bin/python benchmarks/tokenizer_compression.py --vocab-size 8000
    .venv/bin/python benchmarks/tokenizer_compression.py --vocab-size 2000 8000 16000 --data-dir ../shared/data
"""

import argparse
import time
from pathlib import Path

from scratchformers.tokenization_scratch import compression_report, train_tokenizer_from_iterator

TRAIN_FILES = {"English": "en_tinyshakespeare.txt", "中文": "zh_hongloumeng.txt"}
OTHER_FILES = {
    "English, other style (en_tinystories_valid_sample.txt)": "en_tinystories_valid_sample.txt",
    "中文, other style (zh_classical_poetry.txt)": "zh_classical_poetry.txt",
}


def split_lines(path: Path, holdout: float) -> tuple[list[str], list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = int(len(lines) * (1 - holdout))
    return lines[:cut], lines[cut:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data",
        help="folder holding the shared corpora (default: ../shared/data relative to the repository)",
    )
    parser.add_argument("--vocab-size", type=int, nargs="+", default=[8000], help="one or more vocabulary sizes")
    parser.add_argument("--holdout", type=float, default=0.1, help="fraction of lines kept out of training")
    parser.add_argument("--save-dir", type=Path, help="save each tokenizer to SAVE_DIR/bpe-<vocab size>")
    args = parser.parse_args(argv)

    missing = [name for name in [*TRAIN_FILES.values(), *OTHER_FILES.values()] if not (args.data_dir / name).is_file()]
    if missing:
        parser.error(f"missing in {args.data_dir}: {', '.join(missing)} (pass --data-dir)")

    train_texts, samples = [], {}
    for language, name in TRAIN_FILES.items():
        train, held_out = split_lines(args.data_dir / name, args.holdout)
        train_texts += train
        samples[f"{language} held-out ({name})"] = ["".join(held_out)]
    for language, name in OTHER_FILES.items():
        samples[language] = [(args.data_dir / name).read_text(encoding="utf-8")]
    print(f"training text: {sum(len(t.encode()) for t in train_texts):,} bytes from {', '.join(TRAIN_FILES.values())}")

    for vocab_size in args.vocab_size:
        start = time.perf_counter()
        tokenizer = train_tokenizer_from_iterator(train_texts, vocab_size=vocab_size, show_progress=False)
        print(f"\n### vocab_size={vocab_size} (trained in {time.perf_counter() - start:.1f} s)\n")
        print(compression_report(tokenizer, samples))
        if args.save_dir:
            tokenizer.save_pretrained(args.save_dir / f"bpe-{vocab_size}")


if __name__ == "__main__":
    main()
