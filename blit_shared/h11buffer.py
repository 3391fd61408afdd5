"""h11's receive buffer without its copies of body bytes: an HTTP carrier stream was spending
43% of the receiving process in them.

h11 (0.16) appends every read to one bytearray and slices each body piece out of it twice,
then httpcore copies the piece once more into bytes: five copies of every byte of a 1 GiB
HTTP pull. This buffer keeps the bytes of the latest read as they came and hands body pieces
out as slices of them (the whole read when a chunk covers it: no copy at all); lines (chunk
sizes, headers) are cut the same way. Anything else falls back to h11's own code. Installed by
both ends' `h2tuning` (the client's httpcore and the daemon's Hypercorn both parse with h11).
"""

from __future__ import annotations

import h11._connection
from h11._receivebuffer import ReceiveBuffer


class ReadBuffer(ReceiveBuffer):
    """A ReceiveBuffer whose newest read stays a `bytes` object until a line search needs
    more than it holds."""

    def __init__(self) -> None:
        super().__init__()
        self._read = b""  # the unconsumed tail of the latest read starts at self._at
        self._at = 0

    def _settle(self) -> None:
        """Move the held read into h11's bytearray (for the methods that only work there)."""
        if self._at < len(self._read):
            self._data += memoryview(self._read)[self._at:]
        self._read, self._at = b"", 0

    def __iadd__(self, byteslike: bytes | bytearray) -> ReadBuffer:
        if self._data or self._at < len(self._read):
            self._settle()
            self._data += byteslike
        else:
            self._read, self._at = bytes(byteslike), 0
        return self

    def __len__(self) -> int:
        return len(self._data) + len(self._read) - self._at

    def __bytes__(self) -> bytes:
        self._settle()
        return super().__bytes__()

    def maybe_extract_at_most(self, count: int) -> bytearray | None:
        if self._data:
            return super().maybe_extract_at_most(count)
        if self._at >= len(self._read):
            return None
        if self._at == 0 and count >= len(self._read):
            out = self._read  # the whole read: handed on as it came
        else:
            out = self._read[self._at:self._at + count]
        self._at += len(out)
        return out  # type: ignore[return-value]  # bytes: h11 and httpcore accept both

    def maybe_extract_next_line(self) -> bytearray | None:
        if not self._data:
            end = self._read.find(b"\r\n", self._at)
            if end != -1:
                line = bytearray(self._read[self._at:end + 2])
                self._at = end + 2
                return line
        self._settle()
        return super().maybe_extract_next_line()

    def maybe_extract_lines(self) -> list[bytearray] | None:
        self._settle()
        return super().maybe_extract_lines()

    def is_next_line_obviously_invalid_request_line(self) -> bool:
        self._settle()
        return super().is_next_line_obviously_invalid_request_line()


def install() -> None:
    """Every h11 connection made from now on (in this process) uses ReadBuffer."""
    h11._connection.ReceiveBuffer = ReadBuffer  # type: ignore[misc]
