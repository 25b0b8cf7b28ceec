"""The Python blocks of README.md and docs/*.md run as tests (pytest-markdown-docs, `--markdown-docs` in
pyproject.toml). Each runs in its own empty folder, so the files a block writes never land in the checkout; the
project's `../shared/data` stays reachable as `../shared/data` from there. The Chinese pages are not run: their code
blocks must equal the English ones (tests/test_docs.py), which are."""

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent
collect_ignore_glob = ["docs/zh/*", "README_zh.md"]

# two cores: several pytest workers each with two intra-op threads only fight over them
torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))


@pytest.fixture(autouse=True)
def _docs_block_in_a_fresh_folder(request, tmp_path, monkeypatch):
    if request.node.get_closest_marker("markdown-docs") is None:
        yield
        return
    work = tmp_path / "work"
    work.mkdir()
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield
