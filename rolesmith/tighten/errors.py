"""Errors ``tighten`` raises: one line naming the role or file and the fix."""

from __future__ import annotations

from rolesmith.errors import RolesmithError


class TightenInputError(RolesmithError):
    """Bad input: unknown role, malformed policy or backup file, contradicting options."""

    exit_code = 2


class TightenAwsError(RolesmithError):
    """An AWS call failed (permissions, throttling, network): not the user's input."""

    exit_code = 1


class VerificationError(RolesmithError):
    """The replacement would deny a call the workload made: never applied."""

    exit_code = 1
