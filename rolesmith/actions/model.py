"""What an event needed from IAM: (action, resource[, conditions]) triples."""

from __future__ import annotations

from dataclasses import dataclass

# A condition is (operator, key, value): ("StringEquals", "kms:ViaService", "s3.us-east-1.amazonaws.com").
Condition = tuple[str, str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class Use:
    """One IAM permission an event needed.

    ``action`` uses the Service Authorization Reference casing (``s3:PutObject``). ``resource`` is an
    ARN, or ``"*"`` only when the action has no resource type in the dataset, or has only optional
    ones and the call named none of them (then ``EventUses.notes`` says so). ``via`` names the
    service that made the call on the principal's behalf (``s3.amazonaws.com``) and ``conditions``
    carries the documented condition that scopes such use (``kms:ViaService``). ``inferred_by`` is the
    rule id when the use was not in the trail but implied by request parameters.
    """

    action: str
    resource: str
    resource_account: str | None = None
    conditions: tuple[Condition, ...] = ()
    via: str | None = None
    inferred_by: str | None = None
    # An ARN that could not be fully resolved from the event: unknown parts are ``*`` and the
    # policy stage reports a finding rather than silently widening.
    partial: bool = False

    @property
    def service(self) -> str:
        return self.action.split(":", 1)[0]


@dataclass(frozen=True, kw_only=True, slots=True)
class EventUses:
    """Everything one event maps to.

    ``uses`` are the permissions the call itself needed (observed); ``inferred`` are uses implied by
    its parameters that AWS services make on the caller's behalf (SSE-KMS data keys, PassRole);
    ``unknown`` is set when the event could not be mapped (unknown service or action) with the reason.
    ``notes`` say why something was deliberately *not* emitted (an AWS-managed key needs no caller
    KMS statement) so that ``explain`` and the findings can show it.
    """

    uses: tuple[Use, ...] = ()
    inferred: tuple[Use, ...] = ()
    unknown: str | None = None
    notes: tuple[str, ...] = ()
