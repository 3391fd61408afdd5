"""Transfer options, one definition for the CLI, the control plane and every route."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import UsageError

MAX_EXCLUDES = 1000
MAX_PATTERN = 1024
IO_TIMEOUT = 60.0  # seconds without progress before a data stream is declared stalled


@dataclass(slots=True)
class Options:
    mirror: bool = False
    checksum: bool = False
    dry_run: bool = False
    excludes: list[str] = field(default_factory=list)
    streams: int | None = None
    allow_empty_source: bool = False
    max_delete: int | None = None
    verify: bool = True  # end-to-end xxh3-128 of what each stream carried

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Options:
        if not isinstance(data, dict):
            raise UsageError("options must be an object")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        opts = cls(**known)
        for name in ("mirror", "checksum", "dry_run", "allow_empty_source", "verify"):
            if not isinstance(getattr(opts, name), bool):
                raise UsageError(f"option {name} must be a boolean")
        if not isinstance(opts.excludes, list) or len(opts.excludes) > MAX_EXCLUDES or not all(
                isinstance(p, str) and len(p) <= MAX_PATTERN for p in opts.excludes):
            raise UsageError("excludes must be a list of short strings")
        if opts.max_delete is not None and (not isinstance(opts.max_delete, int)
                                            or isinstance(opts.max_delete, bool)
                                            or opts.max_delete < 0):
            raise UsageError("max_delete must be a non-negative integer")
        if opts.streams is not None and (not isinstance(opts.streams, int)
                                         or not 1 <= opts.streams <= 32):
            raise UsageError("streams must be between 1 and 32")
        return opts
