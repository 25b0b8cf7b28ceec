"""Every shell command in README.md runs, in order, in an empty folder, as a user on a fresh clone would paste it.

What a test cannot do it replaces, and says so here: `.venv/bin/` is this interpreter's folder; the download address
of tinyshakespeare is a local server holding a generated text (the tests have no internet); a time budget (the
README's is 10 minutes) is 15 seconds; a server started in the background (`... &`) listens on a free port instead of
8000, and is stopped at the end. Set-up lines are checked, not run: the Quickstart's test command is what CI
runs (tests/test_docs.py), `pip install` must already have installed every requirement it names, and `npm ci` must
have filled js/node_modules (.ci/run does both). README_zh.md carries the same code blocks (tests/test_docs.py).
"""

import importlib.metadata
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FENCE
from packaging.requirements import Requirement

from scratchformers.training.synthetic import make_story_corpus

ROOT = Path(__file__).resolve().parents[1]
DOWNLOAD = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def readme_commands() -> list[str]:
    """The README's shell commands in order: continuation lines joined, comments dropped."""
    commands = []
    for info, block in FENCE.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        if info.split()[:1] != ["bash"]:
            continue
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


def missing_requirements(pip_command: str) -> list[str]:
    """What `.venv/bin/pip install ...` names (extras of this package included) that is not installed here."""
    wanted = []
    for word in shlex.split(pip_command)[2:]:
        if word.startswith("-"):
            continue
        if word.startswith(".["):
            extras = set(word[2:-1].split(","))
            for line in importlib.metadata.requires("scratchformers") or []:
                requirement = Requirement(line)
                if requirement.marker and any(requirement.marker.evaluate({"extra": e}) for e in extras):
                    wanted.append(requirement.name)
        elif word != ".":
            wanted.append(Requirement(word).name)
    missing = []
    for name in wanted:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def test_readme_commands_are_found():
    commands = readme_commands()  # the Quickstart's two: tests/test_docs.py
    assert any(DOWNLOAD in c for c in commands) and any("--time_budget 10m" in c for c in commands)
    assert any(c.startswith("node js/generate.mjs") for c in commands)


def test_every_readme_command_runs_on_a_fresh_folder(tmp_path, http_folder):
    served, url = http_folder
    (served / "input.txt").write_text("\n\n".join(make_story_corpus(1500, seed=0)), encoding="utf-8")
    work = tmp_path / "clone"
    work.mkdir()
    for name in ("recipes", "js"):  # what the commands read from the repository
        (work / name).symlink_to(ROOT / name)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    ran, not_here, servers = [], [], []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        for command in readme_commands():
            if command.startswith("python3 -m venv"):
                command = command.split(" && ")[-1]
                if "pytest" in command:
                    continue
            if command.startswith(".venv/bin/pip install"):
                missing = missing_requirements(command)
                assert not missing, f"`{command}` installs {missing}, which the test environment lacks"
                continue
            if "npm ci" in command:
                if not (ROOT / "js" / "node_modules" / "@huggingface" / "transformers").is_dir():
                    not_here.append("js/node_modules (run the README's npm ci)")
                continue
            if command.startswith("node ") and (not_here or shutil.which("node") is None):
                not_here.append(command)
                continue
            command = command.replace(".venv/bin/", f"{bin_dir}/").replace(DOWNLOAD, f"{url}/input.txt")
            command = re.sub(r"--time_budget \S+", "--time_budget 15s", command)
            command = command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            if command.endswith("&"):  # a server, for the commands that follow
                servers.append(subprocess.Popen(f"{command[:-1].strip()} --port {port}", shell=True, cwd=work, env=env,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                start_new_session=True))
                ran.append(command)
                continue
            result = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=900)
            assert result.returncode == 0, f"`{command}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            if command.startswith("curl"):  # the server's answer, not an error
                assert '"choices"' in result.stdout, result.stdout
            ran.append(command)
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    assert (work / "demo_output" / "sft" / "config.json").is_file()
    assert (work / "runs" / "shakespeare" / "model.safetensors").is_file()
    assert (work / "model.gguf").is_file() and (work / "model_int8").is_dir()
    assert servers, "the README starts no server"
    if not_here:
        if os.environ.get("SCRATCHFORMERS_REQUIRE_JS") == "1":
            pytest.fail(f"not run, and SCRATCHFORMERS_REQUIRE_JS=1: {not_here}")
        pytest.skip(f"ran {len(ran)} README commands; not on this machine: {not_here}")
