"""Error types with stable codes shared by the API, the CLI exit codes and the wire."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_PARTIAL = 2
EXIT_USAGE = 3


class BlitError(Exception):
    """A failure with a machine-readable code; `status` is the HTTP status the API uses for it."""

    code = "internal"
    status = 500
    exit_code = EXIT_FATAL

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class UsageError(BlitError):
    code = "usage"
    status = 400
    exit_code = EXIT_USAGE


class ProtocolError(BlitError):
    code = "protocol"
    status = 400


class UnsafePath(ProtocolError):
    """A path that would leave its tree; a protocol error when a peer sends it."""

    code = "unsafe_path"
    status = 400


class NotFound(BlitError):
    code = "not_found"
    status = 404


class Forbidden(BlitError):
    code = "forbidden"
    status = 403


class Unauthorized(BlitError):
    code = "unauthorized"
    status = 401


class TooLarge(BlitError):
    code = "too_large"
    status = 413


class Conflict(BlitError):
    code = "conflict"
    status = 409


class TransferFailed(BlitError):
    code = "transfer_failed"
    status = 500
