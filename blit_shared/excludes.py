"""Gitignore-style --exclude matching (pathspec), applied to both SOURCE and DESTINATION scans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import UsageError


class Excludes:
    """Matches relative POSIX paths against gitignore-style patterns; empty when no patterns."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        self.patterns = list(patterns)
        self._spec = self._compile(self.patterns) if self.patterns else None

    @staticmethod
    def _compile(patterns: list[str]) -> Any:
        import pathspec  # loaded only when there are patterns: it costs ~10 ms of start-up

        try:
            return pathspec.GitIgnoreSpec.from_lines(patterns)
        except Exception as exc:  # pathspec raises its own errors and re.error
            raise UsageError(f"bad --exclude pattern: {exc}") from None

    def __bool__(self) -> bool:
        return self._spec is not None

    def match(self, rel: str, is_dir: bool) -> bool:
        if self._spec is None or rel == "":
            return False
        return self._spec.match_file(rel + "/" if is_dir else rel)
