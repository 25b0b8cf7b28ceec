"""Docs that cannot rot: every `file:function` they name exists, every English page has a Chinese twin with the same
code blocks, every shell block outside the README is marked illustrative (the README's run in
tests/test_readme_commands.py, the Python blocks through pytest-markdown-docs), the README stays under 10 KB, its
test command is what CI runs, and the site builds strictly."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FENCE

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
ENGLISH = [ROOT / "README.md", *PAGES]
CHINESE = {page: (ROOT / "README_zh.md" if page.name == "README.md" else ROOT / "docs" / "zh" / page.name)
           for page in ENGLISH}
ALL_PAGES = ENGLISH + list(CHINESE.values())
# `path/file.py:Name`, `path/file.py:Class.method` and `tests/test_x.py::test_name`
REFERENCE = re.compile(r"`((?:[\w.-]+/)*[\w.-]+\.py)(::?)([\w.]+)`")
SHELL = {"bash", "sh", "shell", "console"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def defined_names(path: Path) -> set[str]:
    """Top-level functions, classes and assignments of a Python file, and `Class.method` for methods."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            if isinstance(node, ast.ClassDef):
                names |= {f"{node.name}.{item.name}" for item in node.body
                          if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def fences(page: Path) -> list[tuple[str, str]]:
    return [(info.strip(), body) for info, body in FENCE.findall(page.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page", ALL_PAGES, ids=rel)
def test_every_file_and_function_the_docs_name_exists(page):
    assert page.is_file(), f"{rel(page)} is missing"
    missing = []
    for file, separator, name in REFERENCE.findall(page.read_text(encoding="utf-8")):
        path = ROOT / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
        elif name not in defined_names(path):
            missing.append(f"{file}{separator}{name}")
        elif separator == "::" and not name.startswith("test"):
            missing.append(f"{file}::{name} (not a test)")
    assert not missing, f"{rel(page)} names what does not exist: {missing}"


def test_the_docs_name_at_least_one_test_per_page():
    for page in ENGLISH[1:]:
        if page.name in ("index.md", "troubleshooting.md", "benchmarks.md"):
            continue
        assert "::test_" in page.read_text(encoding="utf-8"), f"{rel(page)} points to no test"


@pytest.mark.parametrize("page", ENGLISH, ids=rel)
def test_every_english_page_has_a_chinese_twin_with_the_same_code_blocks(page):
    twin = CHINESE[page]
    assert twin.is_file(), f"{rel(page)} has no Chinese counterpart {rel(twin)}"
    assert [body for _, body in fences(page)] == [body for _, body in fences(twin)], (
        f"the code blocks of {rel(twin)} differ from those of {rel(page)}")
    assert [info for info, _ in fences(page)] == [info for info, _ in fences(twin)]
    assert re.search(r"[\u4e00-\u9fff]", twin.read_text(encoding="utf-8")), f"{rel(twin)} holds no Chinese"


@pytest.mark.parametrize("page", ENGLISH, ids=rel)
def test_every_shell_block_is_marked_illustrative(page):
    """The README is the exception: tests/test_readme_commands.py runs every command in it, and the guide's blocks
    marked `guide` (test_the_guides_data_commands_run_on_a_fresh_folder there)."""
    if page.name == "README.md":
        return
    text = page.read_text(encoding="utf-8")
    unmarked = [body.splitlines()[0] for info, body in FENCE.findall(text) if info.split()[:1]
                and info.split()[0] in SHELL and not {"illustrative", "guide"} & set(info.split())]
    assert not unmarked, f"{rel(page)}: shell blocks that are neither run by a test nor marked illustrative: {unmarked}"


def test_python_blocks_that_are_not_run_say_why():
    """`notest` only where a block needs what a test cannot have (the network, llama.cpp's own program, a server
    that another command started)."""
    for page in ENGLISH:
        for info, body in fences(page):
            if info.startswith("python") and "notest" in info.split():
                assert re.search(r"your-name/|llama_cpp|runs/|127\.0\.0\.1:8000", body), f"{rel(page)}: a notest block that could run"


def test_readme_fits_on_a_screen_and_links_to_both_languages():
    for readme, other in (("README.md", "README_zh.md"), ("README_zh.md", "README.md")):
        text = (ROOT / readme).read_text(encoding="utf-8")
        assert len(text.encode("utf-8")) <= 10 * 1024, f"{readme} is {len(text.encode('utf-8'))} bytes"
        assert f"]({other})" in text.split("\n## ")[0], f"{readme} does not link to {other} at the top"
    for link in re.findall(r"\]\(((?:docs|benchmarks|recipes)/[^)#]+)", (ROOT / "README.md").read_text()):
        assert (ROOT / link).exists(), f"README links to a missing {link}"


def test_the_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [body.strip() for info, body in FENCE.findall(readme.split("\n## ", 2)[1]) if "bash" in info]
    assert len(commands) == 2, "the Quickstart has exactly two commands"
    assert commands[0].endswith("scratchformers demo") and "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == commands[1]


def test_the_site_builds_strictly(tmp_path):
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    mkdocs = str(Path(sys.executable).parent / "mkdocs")
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "zh" / "lora" / "index.html").is_file()
