"""Every shell command in README.md runs, in order, in an empty folder, as a user on a fresh clone would paste it.

What a test cannot do it replaces, and says so here: `.venv/bin/` is this interpreter's folder; the download address
of tinyshakespeare is a local server holding a generated text (the tests have no internet); a time budget (the
README's is 10 minutes) is 15 seconds; a server started in the background (`... &`) listens on a free port instead of
8000, and is stopped at the end. Set-up lines are checked, not run: the Quickstart's test command is what CI
runs (tests/test_docs.py), `pip install` must already have installed every requirement it names, and `npm ci` must
have filled js/node_modules (.ci/run does both). README_zh.md carries the same code blocks (tests/test_docs.py).

The guide's blocks marked `bash guide` (its SFT, classification, 红楼梦 and BERT commands) run the same way, page after
page in one folder: `fetch-data` reads small stand-ins of the upstream files from a local server
(SCRATCHFORMERS_DATA_BASE_URL), step counts become 2 and time budgets 5 seconds.
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
from conftest import FENCE, serve_upstream
from packaging.requirements import Requirement

from scratchformers.training.synthetic import make_story_corpus

ROOT = Path(__file__).resolve().parents[1]
DOWNLOAD = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


GUIDE_PAGES = ("pretraining.md", "sft.md", "encoder.md")


def block_commands(text: str, kind: str | None = None) -> list[str]:
    """The shell commands of the `bash` blocks (those marked `bash <kind>` only, if given), in order: continuation
    lines joined, comments dropped."""
    commands = []
    for info, block in FENCE.findall(text):
        if info.split()[:1] != ["bash"] or (kind is not None and kind not in info.split()[1:]):
            continue
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return commands


def readme_commands() -> list[str]:
    """The README's shell commands in order: continuation lines joined, comments dropped."""
    return block_commands((ROOT / "README.md").read_text(encoding="utf-8"))


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


def serve_upstream_stand_ins(served: Path) -> None:
    """Small files in the upstream formats of every `fetch-data` set, where a mirror of GitHub's raw files has them."""
    import csv
    import io
    import json
    import random

    from scratchformers.training.public_data import DATASETS

    rng = random.Random(0)
    stories = make_story_corpus(200, seed=3)
    hanzi = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多"

    def zh(n):
        return "".join(rng.choice(hanzi) for _ in range(n)) + "。"

    def gsm(i):
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        return json.dumps({"question": f"Tom has {a} bags of {b} apples. How many apples? ({i})",
                           "answer": f"{' '.join(stories[i % len(stories)][:300].split())} So he has "
                                     f"{a}*{b}=<<{a}*{b}={a * b}>>{a * b} apples.\n#### {a * b}"})

    reviews = io.StringIO()
    writer = csv.writer(reviews)
    writer.writerow(["label", "review"])
    writer.writerows([(i % 2, zh(20 + i % 30)) for i in range(120)])
    contents = {
        "gsm8k": ["\n".join(gsm(i) for i in range(400)), "\n".join(gsm(i) for i in range(12))],
        "sst2": ["\n".join(f"{i % 2} {' '.join(stories[i % len(stories)][:120].lower().split())} -lrb- {i} -rrb-" for i in range(n))
                 for n in (80, 20, 20)],
        "chnsenticorp": [reviews.getvalue()],
        "hongloumeng": ["\n".join("\u3000\u3000" + zh(60) for _ in range(300))],
    }
    for name in DATASETS:
        serve_upstream(served, name, [text + "\n" for text in contents[name]])


def test_the_guides_data_commands_run_on_a_fresh_folder(tmp_path, http_folder):
    served, url = http_folder
    serve_upstream_stand_ins(served)
    commands = [c for page in GUIDE_PAGES for c in block_commands((ROOT / "docs" / page).read_text("utf-8"), "guide")]
    assert sum(c.startswith(".venv/bin/scratchformers fetch-data") for c in commands) == 3
    assert {"sft", "classify", "pretrain"} <= {c.split()[1] for c in commands}
    assert not any("shared/data" in c for c in commands)
    work = tmp_path / "clone"
    work.mkdir()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "SCRATCHFORMERS_DATA_BASE_URL": url}
    for command in commands:
        command = command.replace(".venv/bin/", f"{bin_dir}/")
        command = re.sub(r"--time_budget \S+", "--time_budget 5s", command)
        command = re.sub(r"--(max_steps|num_train_epochs) \S+", "--max_steps 2", command)
        result = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"`{command}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    for run in ("hongloumeng", "gsm8k", "sst2", "bert-zh"):
        assert (work / "runs" / run / "config.json").is_file(), run
    assert (work / "data" / "cls_en_sst2_validation.csv").read_text().startswith("text,label\n")


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
