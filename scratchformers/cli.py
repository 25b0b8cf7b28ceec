"""The `scratchformers` command line."""

import argparse
import sys


def _demo(args):
    """Build a small model, save it, load it back through AutoModelForCausalLM, and generate."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM

    import scratchformers as sf

    torch.manual_seed(args.seed)
    config = sf.config_from_preset(args.preset, vocab_size=256, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = AutoModelForCausalLM.from_config(config)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
        prompt = torch.tensor([list(b"Hello")])
        out = loaded.generate(prompt, max_new_tokens=20, do_sample=False)
    print(f"{type(loaded).__name__} ({sf.count_parameters(config):,} parameters) loaded from {folder}")
    print("greedy tokens:", out[0].tolist())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scratchformers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help=_demo.__doc__)
    demo.add_argument("--preset", default="gpt-micro")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
