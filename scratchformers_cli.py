"""The `scratchformers` console command: answers `--help` at once, then hands everything else to `scratchformers.cli`.

Importing the `scratchformers` package registers its models with transformers, which imports torch: seconds before a
help text could print. So this module (outside the package) serves help texts from `scratchformers/cli_help.json`,
written by `python -m scratchformers.cli --write-help-cache`, or from a copy made on this machine the first time. A
text is used only when its key matches: the sources of the command line and the versions of transformers, TRL and
Python, which make the flags and their help. Anything else (a job, a mistyped flag, `--help-all`) runs the real parser.
`scratchformers` 命令的入口：帮助信息无需导入 torch 即可显示。
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path

HELP_FLAGS = ("-h", "--help")
# the files whose text makes the parsers, per package
SOURCES = {"scratchformers": ("cli.py", "training/arguments.py", "training/public_data.py"), "hub_scripts": ("cli.py",)}
SHIPPED = "cli_help.json"


def _package_dir(name: str) -> Path | None:
    """A package's folder, found without importing it."""
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def help_key() -> str:
    """What the help texts depend on: the command line's sources and the versions of transformers, TRL, Python."""
    digest = hashlib.sha256()
    for package, files in SOURCES.items():
        folder = _package_dir(package)
        for name in files:
            path = folder / name if folder else None
            digest.update(path.read_bytes() if path and path.is_file() else b"-")
    digest.update(json.dumps(help_versions(), sort_keys=True).encode())
    return digest.hexdigest()[:20]


def help_versions() -> dict[str, str]:
    """The versions of what makes the flags and their help ("-": not installed)."""
    versions = {"python": f"{sys.version_info[0]}.{sys.version_info[1]}"}
    for distribution in ("transformers", "trl"):
        try:
            versions[distribution] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[distribution] = "-"
    return versions


def user_cache_file(key: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "scratchformers" / f"cli_help-{key}.json"


def help_request(argv: list[str]) -> str | None:
    """The command whose help `argv` asks for ("" for the top level, "dpo", "export onnx"), or None when `argv`
    asks for more than a help text."""
    if not argv:
        return ""
    if argv[-1] in HELP_FLAGS and not any(arg.startswith("-") for arg in argv[:-1]):
        return " ".join(argv[:-1])
    return None


def cached_help(command: str, key: str) -> str | None:
    """The stored help of `command` for this key: the shipped file's, else this machine's copy, else None."""
    package = _package_dir("scratchformers")
    for file in ([package / SHIPPED] if package else []) + [user_cache_file(key)]:
        try:
            stored = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if stored.get("key") == key and command in stored.get("texts", {}):
            return stored["texts"][command]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = help_request(argv)
    if command is not None:
        key = help_key()
        text = cached_help(command, key)
        if text is not None:
            sys.stdout.write(text)
            return 0
    from scratchformers import cli

    if command is not None:  # keep this machine's help texts for the next time (a read-only home only costs time)
        try:
            cli.write_help_cache(user_cache_file(key), key)
        except Exception:  # noqa: BLE001 - a cache that cannot be written never stops the command itself
            pass
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
