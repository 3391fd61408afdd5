"""The DESTINATION's scan of its own tree: made when first needed, or started early on a
thread or in a forked child, and its digest (what a re-run is matched by)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from .forkscan import ForkedScan
from .manifest import Manifest

_UNSET = object()


def digest_of(manifest: Manifest) -> str | None:
    """Manifest.digest, None for a lone root (nothing a re-run could skip)."""
    return manifest.digest() if len(manifest.entries) > 1 else None


class OwnScan:
    """`scan` run once. A no-op re-run of 20,000 files is mostly two scans: started early,
    this one overlaps the SOURCE scan (or the wait for its manifest)."""

    def __init__(self, scan: Callable[[], Manifest]) -> None:
        self._scan = scan
        self._thread: Future[Manifest] | None = None
        self._forked: ForkedScan | None = None
        self._manifest: Manifest | None = None
        self._digest: object = _UNSET

    def start(self, *, forked: bool = False) -> None:
        """Scan in the background: on a thread, or (`forked`) in a child process, for a
        caller that scans the SOURCE itself meanwhile (two scans on threads share the GIL).
        A second call keeps the first scan."""
        if self._thread is not None or self._forked is not None or self._manifest is not None:
            return
        if forked:
            self._forked = ForkedScan(self._scan, digest_of)
            return
        future: Future[Manifest] = Future()

        def run() -> None:
            try:
                own = self._scan()
                self._digest = digest_of(own)  # a re-run's digest check needs it next
                future.set_result(own)
            except BaseException as exc:  # handed to manifest(), which raises it there
                future.set_exception(exc)

        self._thread = future
        threading.Thread(target=run, name="blit-prescan", daemon=True).start()

    def _head(self) -> dict[str, object] | None:
        """A forked scan's head (digest, errors, temps, count): None when the scan is not
        forked or the child failed (the answer then comes from manifest())."""
        return self._forked.head() if self._forked is not None else None

    def digest(self) -> str | None:
        """digest_of() this scan (a forked scan sends it ahead of its entries)."""
        if self._digest is _UNSET:
            head = self._head()
            if head is not None:
                self._digest = head["digest"]
            else:
                own = self.manifest()
                if self._digest is _UNSET:
                    self._digest = digest_of(own)
        return self._digest  # type: ignore[return-value]

    def matches(self, source: Manifest) -> bool:
        """The SOURCE manifest is this scan (equal digests): nothing is to be compared."""
        theirs = digest_of(source)  # first: a forked scan's head may come in meanwhile
        return theirs is not None and theirs == self.digest()

    def temps(self) -> list[str]:
        """The blit temp files the scan saw (without waiting for a forked scan's entries)."""
        head = self._head()
        return head["temps"] if head is not None else self.manifest().temps  # type: ignore[return-value]

    def count(self) -> int:
        """The scan's entries (without waiting for a forked scan's entries)."""
        head = self._head()
        return head["count"] if head is not None else len(self.manifest().entries)  # type: ignore[return-value]

    def manifest(self) -> Manifest:
        if self._manifest is None:
            if self._forked is not None:
                own = self._forked.manifest()
                self._forked = None
                # A failed child: scanned again here, which raises its error.
                self._manifest = own if own is not None else self._scan()
            elif self._thread is not None:
                self._manifest = self._thread.result()
            else:
                self._manifest = self._scan()
            self._thread = None
        return self._manifest

    def drop(self) -> None:
        """Stop a forked scan whose entries are not (or no longer) wanted."""
        if self._forked is not None:
            self._forked.close()
            self._forked = None
