"""Shared fixtures: real trees built once per session, cloned when a test needs to change one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import assert_same_tree, make_tree

MiB = 1 << 20


@pytest.fixture(scope="session")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full tree of the issue (5,000 small files, a 50 MiB file); read-only for tests."""
    root = tmp_path_factory.mktemp("big") / "src"
    make_tree(root)
    return root


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every kind of entry, few small files and a 20 MiB file (striped); read-only for tests."""
    root = tmp_path_factory.mktemp("small") / "src"
    make_tree(root, small_files=120, big_bytes=20 * MiB)
    return root


@pytest.fixture
def src_tree(small_tree: Path, tmp_path: Path) -> Path:
    """A private copy of small_tree that the test may modify (copytree keeps every mtime)."""
    root = tmp_path / "src"
    shutil.copytree(small_tree, root, symlinks=True)
    assert_same_tree(small_tree, root)
    return root
