"""One request through the sandbox: authenticate, map, authorise every layer, answer or forward.

Mapping uses the same code as ingest: the request becomes a CloudTrail-shaped record, normalised by
``rolesmith.trail.normalize.normalize`` and mapped by ``rolesmith.actions.uses_for``; the record
written to the trail is that same record with its outcome. Service-made calls (``effects``, ``emr``)
go through the same path under the identity AWS uses for them.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import unquote

from rolesmith.sandbox import answers, effects, errors
from rolesmith.sandbox.auth import Credentials, Identity, signature_matches
from rolesmith.sandbox.cloudtrail import Trail, make_record, resource_entries
from rolesmith.sandbox.context import request_context
from rolesmith.trail.wire import Call, DecodeError, api_parameters, cloudtrail_parameters, decode, service_model, event_source
from rolesmith.sandbox.errors import Response
from rolesmith.sandbox.enforce import Check, Refusal, authorize, authorize_all, base_context
from rolesmith.sandbox.seed import Seeder
from rolesmith.sandbox.world import World

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Mapped:
    record: dict[str, Any]
    checks: list[Check]
    unknown: str | None


class Gateway:
    def __init__(self, world: World, creds: Credentials, trail: Trail, moto: Any, seeder: Seeder) -> None:
        self.world = world
        self.creds = creds
        self.trail = trail
        self.moto = moto  # moto's WSGI application
        self.seeder = seeder  # the scenario's resources in moto, created on first need
        self._counter = itertools.count(1)

    # -- mapping ------------------------------------------------------------------------------
    def map_call(self, ident: Identity, call: Call, *, invoked_by: str | None = None,
                 extra_context: Mapping[str, Any] | None = None,
                 response_elements: Mapping[str, Any] | None = None) -> Mapped:
        """Record → normalised event → uses → checks (with every condition key the call carries)."""
        from rolesmith.actions import uses_for
        from rolesmith.trail.normalize import normalize

        params = cloudtrail_parameters(call) if call.host or call.service == "s3" else api_parameters(
            call.service, call.operation, call.params)
        record = make_record(ident=ident, event_source=call.event_source, event_name=call.operation,
                             region=call.region, request_parameters=params,
                             user_agent=call.headers.get("user-agent"), invoked_by=invoked_by)
        if response_elements:
            record["responseElements"] = dict(response_elements)
        event = normalize(record, f"sandbox#{next(self._counter)}")
        mapped = uses_for(event)
        # A service acting with the caller's credentials (S3 → KMS) adds aws:CalledVia; a service using
        # its own role session (EMR's service role) is the caller itself.
        ctx = base_context(ident, call.region, via=invoked_by if ident.invoked_by is None else None)
        ctx.update(request_context(call, ident))
        if extra_context:
            ctx.update(extra_context)
        checks = []
        for use in mapped.uses:
            c = dict(ctx)
            for _op, key, value in use.conditions:
                c.setdefault(key, value)
            checks.append(Check(action=use.action, resource=use.resource, resource_account=use.resource_account,
                                context=c))
        return Mapped(record=record, checks=checks, unknown=mapped.unknown)

    def finish(self, mapped: Mapped, checks: list[Check], *, error: tuple[str, str] | None,
               response_elements: Mapping[str, Any] | None = None) -> None:
        rec = mapped.record
        # The sandbox knows each bucket's owner; the mapping can only guess it from the record.
        arns = [(c.resource, _owner(self.world, c.resource) or c.resource_account) for c in checks]
        rec["resources"] = resource_entries(arns)
        if error is not None:
            rec["errorCode"], rec["errorMessage"] = error
        if response_elements:
            rec["responseElements"] = dict(response_elements)
        others = {a for _, a in arns if a and a != rec["recipientAccountId"]}
        self.trail.add(rec, others)

    # -- service-made calls -------------------------------------------------------------------
    def run_inner(self, inner: effects.Inner) -> Refusal | None:
        call = synthetic(inner.service, inner.operation, inner.params, self.world.region)
        mapped = self.map_call(inner.ident, call, invoked_by=inner.invoked_by,
                               extra_context=inner.context, response_elements=inner.response)
        plan = effects.plan(self.world, inner.ident, call)
        checks = [c for c in mapped.checks if c.action not in plan.replaces] + list(inner.checks)
        refusal = authorize_all(self.world, inner.ident, checks)
        code = "AccessDeniedException" if inner.service in ("kms",) else errors.code_for(service_model(inner.service).protocol)
        self.finish(mapped, checks, error=(code, refusal.message) if refusal else None)
        return refusal

    # -- the request --------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            call = decode(method, path, lower, body)
        except DecodeError as err:
            return errors.bad_request(str(err))
        token = lower.get("x-amz-security-token") or call.query.get("X-Amz-Security-Token")
        ident = self.creds.lookup(call.access_key, token)
        if ident is None:
            return errors.invalid_credentials(call, method)
        if not signature_matches(method, path, lower, body, ident):
            return errors.bad_signature(call, method)
        if call.service == "sts" and call.operation == "GetCallerIdentity":
            mapped = self.map_call(ident, call)
            self.finish(mapped, [], error=None)
            from rolesmith.sandbox import sts  # STS and EMR modules load on their first call: cold start

            return sts.caller_identity(ident)
        mapped = self.map_call(ident, call)
        if mapped.unknown and not mapped.checks:
            msg = f"rolesmith sandbox cannot map {call.service}:{call.operation}: {mapped.unknown}"
            self.finish(mapped, [], error=("AccessDenied", msg))
            return errors.denied(call, method, msg, s3_bare=False)
        plan = effects.plan(self.world, ident, call)
        checks = [c for c in mapped.checks if c.action not in plan.replaces] + plan.checks
        if plan.error is not None:
            status, code, message = plan.error
            self.finish(mapped, checks, error=(code, message))
            return errors.client_error(call, method, status, code, message)
        refusal = authorize_all(self.world, ident, checks)
        if refusal is None and plan.ownership_refusal:
            self.finish(mapped, checks, error=("AccessDenied", "Access Denied"))
            return errors.denied(call, method, "Access Denied", s3_bare=True)
        if refusal is None:
            for inner in plan.inner:
                refusal = self.run_inner(inner)
                if refusal is not None:
                    # S3 passes KMS's refusal on as its own AccessDenied, with KMS's message.
                    self.finish(mapped, checks, error=(errors.code_for(call.protocol), refusal.message))
                    return errors.denied(call, method, refusal.message, s3_bare=False)
        if refusal is not None:
            s3 = call.service == "s3"
            self.finish(mapped, checks, error=(errors.code_for(call.protocol), "Access Denied" if s3 else refusal.message))
            return errors.denied(call, method, refusal.message, s3_bare=s3)
        if call.service == "sts" and call.operation in ("AssumeRole",):
            from rolesmith.sandbox import sts

            return sts.assume_role(self, ident, call, mapped, checks)
        if call.service == "cloudtrail" and call.operation == "LookupEvents":
            self.finish(mapped, checks, error=None)
            return errors.json_response(call, self.trail.lookup_events(ident.account, call.params))
        local = answers.answer(self.world, ident, call)  # reads of what is enforced, not moto's copy
        if local is not None:
            self.finish(mapped, checks, error=errors.parse_error(call.protocol, local.status, local.body)
                        if local.status >= 300 else None)
            return local
        self.seeder.ensure_for(call.service)
        resp = self.forward(method, path, headers, body, self._target_account(ident, call, checks))
        if resp.status == 404 and call.service == "s3" and call.operation in ("GetObject", "HeadObject") \
                and self._hides_missing_key(ident, call):
            self.finish(mapped, checks, error=("AccessDenied", "Access Denied"))
            return errors.denied(call, method, "Access Denied", s3_bare=True)
        err = errors.parse_error(call.protocol, resp.status, resp.body) if resp.status >= 300 else None
        elements = None
        if err is None:
            effects.after(self.world, ident, call, body, resp.body)
            elements = _response_elements(call, resp.body)
        self.finish(mapped, checks, error=err, response_elements=elements)
        if err is None and call.service == "emr" and call.operation == "RunJobFlow" and elements:
            from rolesmith.sandbox import emr

            emr.simulate(self, ident, call, str(elements.get("jobFlowId")))
        return resp

    def _hides_missing_key(self, ident: Identity, call: Call) -> bool:
        """S3 answers 403 instead of 404 for a missing object when the caller may not list the bucket
        (GetObject API reference, "Permissions": https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html)."""
        bucket = str(call.params.get("Bucket", ""))
        check = Check(action="s3:ListBucket", resource=f"arn:aws:s3:::{bucket}",
                      context=base_context(ident, call.region))
        return authorize(self.world, ident, check) is not None

    def _target_account(self, ident: Identity, call: Call, checks: list[Check]) -> str:
        """The moto account holding the state: KMS keys and queues live in their owner's account."""
        if call.service in ("kms", "sqs"):
            for c in checks:
                parts = c.resource.split(":")
                if len(parts) > 4 and parts[4].isdigit():
                    return parts[4]
        return ident.account

    def forward(self, method: str, path: str, headers: Mapping[str, str], body: bytes, account: str) -> Response:
        """Hand the request to moto's server application (in-process WSGI: no socket, no second port)."""
        from werkzeug.test import EnvironBuilder, run_wsgi_app

        raw_path, _, query = path.partition("?")
        hdrs = [(k, v) for k, v in headers.items() if k.lower() not in ("connection", "transfer-encoding", "content-length")]
        hdrs.append(("x-moto-account-id", account))
        builder = EnvironBuilder(path=unquote(raw_path), method=method, headers=hdrs, data=body, query_string=query)
        try:
            environ = builder.get_environ()
        finally:
            builder.close()
        environ["RAW_URI"] = environ["REQUEST_URI"] = path
        app_iter, status, out_headers = run_wsgi_app(self.moto, environ, buffered=True)
        try:
            data = b"".join(app_iter)
        finally:
            if hasattr(app_iter, "close"):
                app_iter.close()
        hdrs_out = tuple((k, v) for k, v in out_headers.items() if k.lower() not in _HOP)
        return Response(status=int(status.split(" ", 1)[0]), headers=hdrs_out, body=data)


def synthetic(service: str, operation: str, params: Mapping[str, Any], region: str) -> Call:
    model = service_model(service)
    return Call(service=service, operation=operation, params=params, access_key=None, region=region, model=model,
                event_source=event_source(model), protocol=model.protocol)


def _owner(world: World, arn: str) -> str | None:
    if arn.startswith("arn:aws:s3:::"):
        b = world.bucket(arn[13:].split("/", 1)[0])
        return b.account if b else None
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4] else None


def _response_elements(call: Call, body: bytes) -> dict[str, Any] | None:
    """The few response fields later stages read (generated ids); never data or secrets."""
    if call.protocol != "json" or not body:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if call.service == "emr" and call.operation == "RunJobFlow":
        return {"jobFlowId": doc.get("JobFlowId"), "clusterArn": doc.get("ClusterArn")}
    if call.service == "sqs" and call.operation == "CreateQueue":
        return {"queueUrl": doc.get("QueueUrl")}
    return None
