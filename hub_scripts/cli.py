"""Command-line subcommands `push`, `push-adapter` and `convert`.

Every `--dashed-option` also answers to `--dashed_option`, as the other scratchformers commands spell theirs.
`scratchformers` adds them with `hub_scripts.cli.register(subparsers)`; `python -m hub_scripts ...` runs them alone.
"""

import argparse
import functools
import sys

# errors whose message is the whole story for a command-line user
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError)


def _clean_errors(handler):
    """Turn the errors a user can fix into `error: <message>` and exit status 1, without a traceback."""

    @functools.wraps(handler)
    def run(args):
        from .push import HubError

        try:
            handler(args)
        except (HubError, *_USER_ERRORS) as error:
            raise SystemExit(f"error: {error}") from None
        return 0

    return run


def _add_hub_options(parser):
    hub = parser.add_argument_group("Hub")
    hub.add_argument("--private", action="store_true", help="create the repo as private (no effect if it exists)")
    hub.add_argument("--revision", help="branch to push to; created from main if missing (default: main)")
    hub.add_argument("--commit-message", "--commit_message",
                     help="commit message (default: one naming the uploaded folder)")
    hub.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the one saved by `hf auth login`)")
    hub.add_argument("--endpoint", help="Hub URL for self-hosted Hub-compatible servers (default: HF_ENDPOINT or "
                                        "https://huggingface.co)")
    hub.add_argument("--dry-run", "--dry_run", action="store_true",
                     help="write the exact folder that would be uploaded (see --staging-dir), print its files and "
                          "sizes, and upload nothing")
    hub.add_argument("--staging-dir", "--staging_dir", metavar="DIR",
                     help="where --dry-run writes the folder (default: <folder>-hub-staging)")
    hub.add_argument("--overwrite", action="store_true", help="let --dry-run replace a non-empty staging folder")


def _add_card_options(parser, with_record: bool):
    card = parser.add_argument_group("model card")
    card.add_argument("--license", default="apache-2.0", help="license id for the card (default: apache-2.0)")
    card.add_argument("--language", nargs="+", help="language codes, e.g. en zh (default: from the run record)")
    card.add_argument("--dataset", nargs="+", dest="datasets",
                      help="datasets trained on, Hub ids or names (default: from the run record)")
    card.add_argument("--base-model", "--base_model", help="repo id of the model this one was fine-tuned from")
    if with_record:
        card.add_argument("--record", help="a JSON run record to read besides trainer_state.json / training_args")


def _card_options(args) -> dict:
    options = dict(license=args.license, language=args.language, datasets=args.datasets, base_model=args.base_model)
    if hasattr(args, "record"):
        options["record"] = args.record
    return options


def _hub_options(args) -> dict:
    return dict(private=args.private, revision=args.revision, commit_message=args.commit_message, token=args.token,
                endpoint=args.endpoint, dry_run=(args.staging_dir or "") if args.dry_run else None,
                overwrite=args.overwrite)


@_clean_errors
def _push(args):
    from .push import push_model_folder

    push_model_folder(args.folder, args.repo_id, tokenizer=args.tokenizer, **_hub_options(args),
                      **_card_options(args))


@_clean_errors
def _push_adapter(args):
    from .push import push_adapter_folder

    push_adapter_folder(args.folder, args.repo_id, subfolder=args.subfolder, **_hub_options(args),
                        **_card_options(args))


@_clean_errors
def _convert(args):
    from .convert import convert_folder

    source_format, target_format = convert_folder(args.source, args.output, overwrite=args.overwrite,
                                                  max_position_embeddings=args.max_position_embeddings)
    print(f"converted {args.source} ({source_format} -> {target_format}) into {args.output}")


def register(subparsers) -> None:
    """Add `push`, `push-adapter` and `convert` to an argparse subparsers object."""
    push = subparsers.add_parser(
        "push", help="upload a trained model folder (weights, config, remote code, tokenizer, model card) to the Hub",
        description="Stage a model folder for the Hub and upload it: safetensors weights, config with auto_map, "
                    "generation config, tokenizer with chat template, remote code and a bilingual model card.")
    push.add_argument("folder", help="a save_pretrained folder (e.g. a training run's output folder)")
    push.add_argument("repo_id", help="owner/name on the Hub")
    push.add_argument("--tokenizer", help="take the tokenizer from this folder instead of FOLDER")
    _add_hub_options(push)
    _add_card_options(push, with_record=True)
    push.set_defaults(func=_push)

    adapter = subparsers.add_parser(
        "push-adapter", help="upload a PEFT LoRA adapter folder, as its own repo or a subfolder of the model's repo",
        description="Upload a PEFT adapter (adapter_config.json + adapter_model.safetensors) with a card that names "
                    "its base model.")
    adapter.add_argument("folder", help="an adapter folder written by PeftModel.save_pretrained")
    adapter.add_argument("repo_id", help="owner/name on the Hub")
    adapter.add_argument("--subfolder", help="put the adapter in this subfolder of REPO_ID (e.g. the base model's "
                                             "repo); the base model then defaults to REPO_ID")
    _add_hub_options(adapter)
    _add_card_options(adapter, with_record=False)
    adapter.set_defaults(func=_push_adapter)

    convert = subparsers.add_parser(
        "convert", help="convert weights: native GPT-2 <-> GPT, native Llama <-> LLaMA2, Meta LLaMA-2 -> LLaMA2",
        description="The direction follows from the source: config.json model_type gpt2 / scratch_gpt / llama / "
                    "scratch_llama2, or Meta's params.json + consolidated.*.pth.")
    convert.add_argument("source", help="the folder to convert")
    convert.add_argument("output", help="the new folder")
    convert.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it is not empty")
    convert.add_argument("--max-position-embeddings", "--max_position_embeddings", type=int, default=4096,
                         help="context length for Meta checkpoints, which do not record it (LLaMA-2: 4096)")
    convert.set_defaults(func=_convert)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub_scripts", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
