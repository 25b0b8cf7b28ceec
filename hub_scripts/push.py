"""Push trained model folders and LoRA adapters to the Hugging Face Hub.

Every request goes through `huggingface_hub.HfApi` (`create_repo`, `create_branch`, `upload_folder`).
The upload is staged first in a temporary folder that holds exactly what the repo will hold:
safetensors weights, config.json with `auto_map`, generation_config.json, the remote code
(`configuration_*.py`, `modeling_*.py`), the tokenizer with its chat template, README.md (the model card),
and the run's loss_curve.png when it has one.
`dry_run` writes that same folder where you can read it, and uploads nothing.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id as _hf_validate_repo_id

from scratchformers.utils import atomic_output_folder

from ._io import (
    copy_tokenizer_files,
    format_listing,
    has_tokenizer,
    read_config,
    read_json,
    weight_files,
)
from .model_card import _as_list, _hub_dataset_ids, build_adapter_card, build_model_card

ONNX_TEMPLATE = Path(__file__).with_name("templates") / "onnx_card.md.j2"

try:  # the HTTP client huggingface_hub uses; its transport errors are network failures
    from httpx2 import TransportError as _TransportError
except ImportError:  # pragma: no cover - older huggingface_hub releases use httpx
    try:
        from httpx import TransportError as _TransportError
    except ImportError:
        _TransportError = ConnectionError
NETWORK_ERRORS = (ConnectionError, TimeoutError, _TransportError)
LOSS_CURVE = "loss_curve.png"  # the plot the training jobs save; shown in the card when present


class HubError(RuntimeError):
    """A Hub operation failed for a reason the user can act on; the message says what to do."""


def validate_repo_id(repo_id: str) -> str:
    """Check `repo_id` ('owner/name' or 'name') locally, before any network traffic."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError(f"Malformed repo id {repo_id!r}: expected 'owner/name'.")
    try:
        _hf_validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Malformed repo id {repo_id!r}: {error} Expected 'owner/name' made of letters, digits, "
                         f"'-', '_' and '.'.") from None
    return repo_id


def _families() -> dict:
    """The registered model families (importing scratchformers registers its own)."""
    import scratchformers

    return scratchformers.FAMILIES


def _model_class(config: dict):
    family = _families()[config["model_type"]]
    by_name = {cls.__name__: cls for cls in family.heads.values()}
    for name in config.get("architectures") or []:
        if name in by_name:
            return by_name[name]
    return family.pretraining_model


def _check_is_folder(folder: Path, what: str) -> None:
    if folder.is_file():
        raise ValueError(f"{what} expected, but {folder} is a file; pass the folder that holds it.")
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {folder} does not exist.")


def stage_model_folder(folder, output, *, repo_id: str, tokenizer=None, overwrite: bool = False,
                       license: str | None = "apache-2.0", language=None, datasets=None, base_model=None,
                       record=None, endpoint: str | None = None) -> Path:
    """Write to `output` exactly what `push_model_folder` uploads; check that the model and tokenizer load.

    生成即将上传的完整目录（权重、配置、远程代码、分词器、模型卡），并检查模型与分词器都能加载。
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    _check_is_folder(folder, "Model folder")
    if (folder / "onnx" / "model.onnx").is_file():
        return stage_onnx_folder(folder, output, repo_id=repo_id, overwrite=overwrite, license=license,
                                 language=language, datasets=datasets)
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is a PEFT adapter folder; push it with `push-adapter` (push_adapter_folder).")
    try:
        config = read_config(folder, tuple(_families()))
    except ValueError as error:
        raise ValueError(f"{error} Convert native checkpoints first: "
                         f"`python -m hub_scripts convert SRC DST`.") from None
    weight_files(folder)
    tokenizer_folder = Path(tokenizer) if tokenizer else folder
    if not has_tokenizer(tokenizer_folder):
        raise FileNotFoundError(
            f"{tokenizer_folder} holds no tokenizer (tokenizer.json, tokenizer.model or vocab.json). Save it next to "
            f"the model with `tokenizer.save_pretrained('{folder}')` or pass --tokenizer DIR.")

    model, info = _model_class(config).from_pretrained(folder, output_loading_info=True)
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise ValueError(f"{folder}: the weights do not match config.json: "
                         + "; ".join(f"{k.replace('_', ' ')}: {', '.join(map(str, sorted(v)))}"
                                     for k, v in problems.items()))
    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    if len(tok) > model.config.vocab_size:
        raise ValueError(f"The tokenizer in {tokenizer_folder} has {len(tok)} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}; they do not belong together.")
    if not tok.chat_template:
        print(f"note: the tokenizer in {tokenizer_folder} has no chat template; apply_chat_template will not work "
              f"for users of {repo_id}.")

    with atomic_output_folder(output, overwrite, sources=[folder, tokenizer_folder]) as staging:
        model.save_pretrained(staging)
        tok.save_pretrained(staging)
        if (folder / LOSS_CURVE).is_file():
            shutil.copy2(folder / LOSS_CURVE, staging / LOSS_CURVE)
        card = build_model_card(folder, repo_id, weights_folder=staging, license=license, language=language,
                                datasets=datasets, base_model=base_model, record=record,
                                has_chat_template=bool(tok.chat_template), endpoint=endpoint,
                                loss_curve=LOSS_CURVE if (staging / LOSS_CURVE).is_file() else None)
        card.save(staging / "README.md")
    return Path(output)


def stage_onnx_folder(folder, output, *, repo_id: str, overwrite: bool = False, license: str | None = "apache-2.0",
                      language=None, datasets=None) -> Path:
    """Write a `scratchformers export onnx` folder (config, tokenizer, onnx/*.onnx) and a transformers.js card.

    ONNX 导出目录：原样上传，并附带 transformers.js 用法的模型卡。
    """
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    config = read_config(folder)
    if not has_tokenizer(folder):
        raise FileNotFoundError(f"{folder} holds no tokenizer; export again with `scratchformers export onnx`.")
    import scratchformers

    family = scratchformers.families.family_of_native(config.get("model_type"))
    card_text = family.card if family is not None else {"en": config.get("model_type"), "zh": config.get("model_type")}
    quantized = (folder / "onnx" / "model_quantized.onnx").is_file()
    data = ModelCardData(license=license, language=_as_list(language) or None, library_name="transformers.js",
                         pipeline_tag="text-generation", tags=["scratchformers", "onnx", "transformers.js"],
                         datasets=_hub_dataset_ids(_as_list(datasets)) or None)
    with atomic_output_folder(output, overwrite, sources=[folder]) as staging:
        for item in folder.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        shutil.copytree(folder / "onnx", staging / "onnx")
        card = ModelCard.from_template(data, template_path=ONNX_TEMPLATE, model_name=repo_id.split("/")[-1],
                                       repo_id=repo_id, quantized=quantized, family_en=card_text["en"],
                                       family_zh=card_text["zh"])
        card.save(staging / "README.md")
    return Path(output)


def stage_adapter_folder(folder, output, *, repo_id: str, subfolder: str | None = None, base_model=None,
                         overwrite: bool = False, license: str | None = "apache-2.0", language=None,
                         datasets=None, endpoint: str | None = None) -> Path:
    """Write a PEFT adapter (adapter_config.json + adapter_model.safetensors, tokenizer if any) and its card.

    The card names the base model: `base_model`, else REPO_ID when the adapter goes into a subfolder of the
    model's own repo, else the adapter config's `base_model_name_or_path` if it is a Hub repo id.
    """
    folder = Path(folder)
    _check_is_folder(folder, "Adapter folder")
    if not (folder / "adapter_config.json").is_file() and (folder / "config.json").is_file():
        raise ValueError(f"{folder} is a model folder (config.json, no adapter_config.json); push it with `push` "
                         "(push_model_folder).")
    adapter_config = read_json(folder / "adapter_config.json")
    if "peft_type" not in adapter_config:
        raise ValueError(f"{folder / 'adapter_config.json'} has no peft_type; is it a PEFT adapter folder?")
    if not (folder / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} holds no adapter_model.safetensors; save the adapter with "
                                f"`peft_model.save_pretrained(folder)`.")
    base = base_model or (repo_id if subfolder else None) or adapter_config.get("base_model_name_or_path")
    try:
        if not base or Path(base).expanduser().exists():
            raise ValueError
        validate_repo_id(base)
    except ValueError:
        raise ValueError(f"The adapter's base model {base!r} is not a Hub repo id; name it with --base-model "
                         f"owner/name (the repo the base model was pushed to).") from None

    with atomic_output_folder(output, overwrite, sources=[folder]) as staging:
        shutil.copy2(folder / "adapter_model.safetensors", staging / "adapter_model.safetensors")
        adapter_config["base_model_name_or_path"] = base
        (staging / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
        if has_tokenizer(folder):
            copy_tokenizer_files(folder, staging)
        build_adapter_card(repo_id, base, adapter_config, license=license, language=language, datasets=datasets,
                           subfolder=subfolder, endpoint=endpoint).save(staging / "README.md")
    return Path(output)


def _resolve_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise HubError("No Hugging Face token found. Log in with `hf auth login`, set HF_TOKEN, or pass --token. "
                       "Pushing needs a token with write access (https://huggingface.co/settings/tokens).")
    return token


def _call(step: str, repo_id: str, endpoint: str, method, /, **kwargs):
    """Run one HfApi call, turning its failures into a `HubError` that says what to do."""
    try:
        return method(**kwargs)
    except OfflineModeIsEnabled:
        raise HubError(f"HF_HUB_OFFLINE is set, so {step} for {repo_id} was not attempted; unset it to push.") from None
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status == 401:
            raise HubError(f"The Hub at {endpoint} rejected the token (401 Unauthorized) while {step} for {repo_id}. "
                           f"The token is invalid or expired: log in again with `hf auth login` or pass a valid "
                           f"--token.") from None
        if status == 403:
            raise HubError(f"The token may not write to {repo_id} (403 Forbidden) while {step}. Use a token with "
                           f"write access to that namespace.") from None
        if isinstance(error, RepositoryNotFoundError):
            raise HubError(f"{repo_id} was not found at {endpoint} while {step}, or the token cannot see it.") from None
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise HubError(f"The Hub at {endpoint} refused {step} for {repo_id}: {first_line}") from None
    except NETWORK_ERRORS as error:
        raise HubError(f"Network failure while {step} for {repo_id} at {endpoint} ({type(error).__name__}: {error}). "
                       f"Nothing was changed locally; check your connection or --endpoint and run the same command "
                       f"again to retry.") from None


def upload_staged_folder(folder, repo_id: str, *, api=None, path_in_repo: str | None = None, private: bool = False,
                         revision: str | None = None, commit_message: str | None = None, token: str | None = None,
                         endpoint: str | None = None):
    """Create the repo (and branch) if needed and upload `folder` in one commit; returns the `CommitInfo`."""
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    api = api if api is not None else HfApi(endpoint=endpoint, token=token)
    existed = _call("looking up the repo", repo_id, endpoint, api.repo_exists, repo_id=repo_id, repo_type="model")
    _call("creating the repo", repo_id, endpoint, api.create_repo, repo_id=repo_id, repo_type="model",
          private=private or None, exist_ok=True)
    target = f"{repo_id}/{path_in_repo}" if path_in_repo else repo_id
    try:
        if revision and revision != "main":
            _call(f"creating branch {revision!r}", repo_id, endpoint, api.create_branch, repo_id=repo_id,
                  repo_type="model", branch=revision, exist_ok=True)
        return _call("uploading", repo_id, endpoint, api.upload_folder, repo_id=repo_id, repo_type="model",
                     folder_path=str(folder), path_in_repo=path_in_repo, revision=revision,
                     commit_message=commit_message or f"Upload {target} with scratchformers")
    except HubError as error:
        if existed:
            raise
        try:  # the repo was created for this upload and holds nothing: remove it again
            api.delete_repo(repo_id=repo_id, repo_type="model")
            note = f"The empty repo {repo_id} created for this upload was deleted again."
        except Exception as cleanup:  # noqa: BLE001 - report it, the upload error stays the one raised
            note = (f"The repo {repo_id} was created for this upload and is still there, empty "
                    f"(deleting it failed: {type(cleanup).__name__}); delete it or push again.")
        raise HubError(f"{error} {note}") from None


def _dry_run_folder(folder: Path, dry_run) -> Path:
    return Path(dry_run) if dry_run else Path(f"{Path(folder).resolve()}-hub-staging")


def _push(stage, folder, repo_id, *, path_in_repo=None, private=False, revision=None, commit_message=None,
          token=None, endpoint=None, dry_run=None, overwrite=False, api=None):
    validate_repo_id(repo_id)
    where = f"{(endpoint or constants.ENDPOINT).rstrip('/')}/{repo_id}" + (f"/{path_in_repo}" if path_in_repo else "")
    if dry_run is not None:
        staged = stage(_dry_run_folder(folder, dry_run), overwrite)
        print(f"dry run: would upload to {where} (revision {revision or 'main'}"
              f"{', private' if private else ''}):\n{format_listing(staged)}")
        return staged
    token = _resolve_token(token)
    with tempfile.TemporaryDirectory(prefix="scratchformers-push-") as tmp:
        staged = stage(Path(tmp) / "upload", False)
        print(f"uploading to {where}:\n{format_listing(staged)}")
        info = upload_staged_folder(staged, repo_id, api=api, path_in_repo=path_in_repo, private=private,
                                    revision=revision, commit_message=commit_message, token=token, endpoint=endpoint)
    print(f"pushed: {getattr(info, 'commit_url', None) or where}")
    return info


def push_model_folder(folder, repo_id: str, *, tokenizer=None, private: bool = False, revision: str | None = None,
                      commit_message: str | None = None, token: str | None = None, endpoint: str | None = None,
                      dry_run=None, overwrite: bool = False, api=None, license: str | None = "apache-2.0",
                      language=None, datasets=None, base_model=None, record=None):
    """Push a trained model folder to `repo_id` so that `AutoModelForCausalLM.from_pretrained(repo_id,
    trust_remote_code=True)` works without scratchformers installed.

    `dry_run=""` (or a folder path) writes the staged folder and uploads nothing. `api` replaces `HfApi`
    (anything with `create_repo`, `create_branch`, `upload_folder`). Returns the `CommitInfo` (or the dry-run folder).
    把训练好的模型目录推送到 Hub（含远程代码与双语模型卡）；dry_run 只生成待上传目录并列出文件。
    """
    if os.environ.get("HF_ENDPOINT") and endpoint is None:
        endpoint = os.environ["HF_ENDPOINT"]

    def stage(output, overwrite_output):
        return stage_model_folder(folder, output, repo_id=repo_id, tokenizer=tokenizer, overwrite=overwrite_output,
                                  license=license, language=language, datasets=datasets, base_model=base_model,
                                  record=record, endpoint=endpoint)

    return _push(stage, folder, repo_id, private=private, revision=revision, commit_message=commit_message,
                 token=token, endpoint=endpoint, dry_run=dry_run, overwrite=overwrite, api=api)


def push_adapter_folder(folder, repo_id: str, *, subfolder: str | None = None, base_model=None,
                        private: bool = False, revision: str | None = None, commit_message: str | None = None,
                        token: str | None = None, endpoint: str | None = None, dry_run=None, overwrite: bool = False,
                        api=None, license: str | None = "apache-2.0", language=None, datasets=None):
    """Push a PEFT LoRA adapter folder as its own repo, or into `subfolder` of an existing model repo.

    将 PEFT LoRA 适配器推送为独立仓库，或放到基础模型仓库的子目录中；模型卡注明基础模型。
    """
    if os.environ.get("HF_ENDPOINT") and endpoint is None:
        endpoint = os.environ["HF_ENDPOINT"]

    def stage(output, overwrite_output):
        return stage_adapter_folder(folder, output, repo_id=repo_id, subfolder=subfolder, base_model=base_model,
                                    overwrite=overwrite_output, license=license, language=language,
                                    datasets=datasets, endpoint=endpoint)

    return _push(stage, folder, repo_id, path_in_repo=subfolder, private=private, revision=revision,
                 commit_message=commit_message, token=token, endpoint=endpoint, dry_run=dry_run,
                 overwrite=overwrite, api=api)
