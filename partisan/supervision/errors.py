"""Errors of the supervisors (both derive from `PartisanError`)."""

from __future__ import annotations

from partisan.errors import PartisanError

__all__ = ["StartChildError", "SupervisorError"]


class SupervisorError(PartisanError):
    """A supervisor operation was misused (unknown child id, duplicate id, wrong state)."""


class StartChildError(SupervisorError):
    """A child could not be started; `reason` says why (OTP's ``{error, Reason}``).

    For an OS process the message ends with the last lines the child wrote to
    stderr, which is usually the traceback that explains it.
    """

    def __init__(self, child_id: object, reason: object) -> None:
        super().__init__(f"child {child_id!r} failed to start: {reason}")
        self.child_id = child_id
        self.reason = reason
