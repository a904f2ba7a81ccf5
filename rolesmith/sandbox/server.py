"""The sandbox process: moto's server for state, an enforcing HTTP front on 127.0.0.1, credentials.

``start_sandbox`` loads the scenario, issues credentials and serves the front; the scenario's roles,
users, buckets, keys and queues are created in each account of moto's backends service by service,
before the first request forwarded to a moto service that reads them (``seed.Seeder``). Requests that pass
are handed to moto's server application (the WSGI app ``moto_server`` runs) in-process, with moto's
``x-moto-account-id`` header naming the account that holds the state — no second port and no
extra socket round trip. moto's state is process-wide, so one sandbox runs per process at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from rolesmith.errors import RolesmithError
from rolesmith.sandbox.auth import Credentials, Identity
from rolesmith.sandbox.cloudtrail import Trail
from rolesmith.sandbox.gateway import Gateway
from rolesmith.sandbox.scenario import PrincipalSpec, Scenario, check_region_known, load_scenario
from rolesmith.sandbox.seed import Seeder
from rolesmith.sandbox.world import World
from rolesmith.trail.secrets import scrub_text

log = logging.getLogger("rolesmith.sandbox")
_RUNNING = threading.Lock()  # moto's backends are per process: one sandbox at a time


class SandboxError(RolesmithError):
    """The sandbox cannot start or was asked for something it does not have."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms a call.
    disable_nagle_algorithm = True
    server: _FrontServer

    def _serve(self) -> None:
        body = self._body()
        try:
            resp = self.server.gateway.handle(self.command, self.path, dict(self.headers.items()), body)
        except Exception:  # a bug must answer 500, not hang the client
            log.exception("sandbox: %s %s failed", self.command, self.path.split("?")[0])
            data = b"<Error><Code>InternalError</Code><Message>rolesmith sandbox internal error</Message></Error>"
            self.send_response(500)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(resp.status)
        length = None
        for k, v in resp.headers:
            if k.lower() == "content-length":
                length = v
                continue
            self.send_header(k, v)
        if self.command == "HEAD" and length is not None:
            self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The request line of a presigned URL carries its session token and signature in the query.
        log.debug("sandbox: %s", scrub_text(format % args))


class _FrontServer(ThreadingHTTPServer):
    daemon_threads = True
    gateway: Gateway


class SandboxHandle:
    """A running sandbox. ``env_for`` gives the environment a workload needs to run as a principal."""

    def __init__(self, scenario: Scenario, world: World, creds: Credentials, trail: Trail,
                 front: _FrontServer, moto: Any, identities: dict[str, Identity], log_dir: Path | None) -> None:
        self.scenario = scenario
        self.world = world
        self.trail = trail
        self.log_dir = log_dir
        self._creds = creds
        self._front = front
        self._moto = moto
        self._identities = identities
        self._operators: dict[str, Identity] = {}
        self._operator_lock = threading.Lock()
        self._stopped = False
        host, port = front.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        self.region = scenario.region
        self._thread = threading.Thread(target=front.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="rolesmith-sandbox", daemon=True)
        self._thread.start()

    def principals(self) -> list[tuple[str, str]]:
        """(name usable with ``env_for``, ARN) of every principal."""
        return [(p.qualified, p.arn) for p in self.scenario.principals]

    @property
    def default_principal(self) -> str:
        """The scenario's ``run_as`` principal (else the first declared)."""
        return self.scenario.default_principal

    def identity(self, principal_name: str) -> Identity:
        spec = self.scenario.principal(principal_name)
        return self._identities[spec.arn]

    def env_for(self, principal_name: str) -> dict[str, str]:
        """AWS_* variables that make an SDK or the CLI call the sandbox as this principal
        (a user's access key, or a session of the role)."""
        ident = self.identity(principal_name)
        env = {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": ident.access_key,
               "AWS_SECRET_ACCESS_KEY": ident.secret, "AWS_DEFAULT_REGION": self.region,
               "AWS_REGION": self.region}
        if ident.token:
            env["AWS_SESSION_TOKEN"] = ident.token
        return env

    def operator_env(self, account: str | None = None) -> dict[str, str]:
        """AWS_* variables of an administrator of ``account`` (default: the run_as principal's), for
        tooling calls the workload's own principal may not make (LookupEvents, GetCallerIdentity).
        Its calls are enforced (SCPs still apply) and logged like any other."""
        account = account or self.scenario.principal(self.default_principal).account
        with self._operator_lock:
            ident = self._operators.get(account)
            if ident is None:
                spec = PrincipalSpec(name="rolesmith-operator", kind="user", account=account,
                                     account_name=account, policies={"AdministratorAccess": {
                                         "Version": "2012-10-17",
                                         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}})
                ident = self._operators[account] = self._creds.issue_user(spec)
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": ident.access_key,
                "AWS_SECRET_ACCESS_KEY": ident.secret, "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}

    def records(self) -> list[dict[str, Any]]:
        """Every CloudTrail record so far (each account's copy)."""
        return self.trail.records()

    def flush(self) -> None:
        """Write pending CloudTrail records to the log directory."""
        self.trail.flush()

    def reset(self, scenario_path: str | Path | None = None, *, log_dir: str | Path | None = None) -> None:
        """Start over on the same endpoint: empty moto, the scenario (or another one) seeded again,
        new credentials, an empty trail. Much faster than stop + start (tests, converge loops)."""
        scenario = load_scenario(scenario_path) if scenario_path is not None else self.scenario
        check_region_known(scenario)
        new_log_dir = Path(log_dir) if log_dir is not None else self.log_dir
        # The new trail first: a log directory that cannot be written leaves this sandbox as it was.
        world, creds, trail, identities = _state(scenario, new_log_dir)
        self.trail.close()
        _reset_moto()
        self.log_dir = new_log_dir
        self.scenario, self.world, self.trail, self._creds, self._identities = scenario, world, trail, creds, identities
        self._operators = {}
        self.region = scenario.region
        gw = self._front.gateway
        gw.world, gw.creds, gw.trail, gw.seeder = world, creds, trail, Seeder(scenario)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._front.shutdown()
            self._front.server_close()
            self.trail.close()
            _reset_moto()
        finally:
            _RUNNING.release()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reset_moto() -> None:
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


def start_sandbox(scenario_path: str | Path, *, port: int = 0, log_dir: str | Path | None = None,
                  warm: bool = False) -> SandboxHandle:
    """Start a sandbox for the scenario file; ``port=0`` picks a free port. Stop it with ``.stop()``.

    ``warm=True`` loads what the first requests need in a background thread: for a sandbox whose
    clients are other processes (``rolesmith sandbox``, a workload run as a child), whose start-up it
    overlaps. Leave it off when the clients run in this process: the thread would hold the GIL
    while they import, and every file read of theirs would wait for it (measured: the first answer
    in-process 0.3 s later with it, out of process 0.1 s sooner)."""
    scenario = load_scenario(scenario_path)
    check_region_known(scenario)
    if not _RUNNING.acquire(blocking=False):
        raise SandboxError(f"{scenario_path}: a sandbox is already running in this process; stop it first")
    try:
        return _start(scenario, port=port, log_dir=Path(log_dir) if log_dir is not None else None, warm=warm)
    except BaseException:
        _RUNNING.release()
        raise


def _state(scenario: Scenario, log_dir: Path | None) -> tuple[World, Credentials, Trail, dict[str, Identity]]:
    creds = Credentials()
    identities: dict[str, Identity] = {}
    for spec in scenario.principals:
        identities[spec.arn] = (creds.issue_user(spec) if spec.kind == "user"
                                else creds.issue_session(spec, "rolesmith-sandbox", duration=12 * 3600))
    return World(scenario), creds, Trail(log_dir), identities


def _warm(scenario: Scenario, moto: Any) -> None:
    """Load, while a workload in another process is still starting, what the first requests would
    otherwise wait for: the mapping module, botocore models of the scenario's services and moto's S3
    application.

    Only what a request would load anyway, and only what is cheap: moto's applications for regional
    services (KMS, SQS) build a backend whose region list resolves botocore's endpoint data
    (~0.1 s); a workload in this process would wait for that even if it never calls the service."""
    try:
        from rolesmith.actions import uses_for  # noqa: F401
        from rolesmith.trail.wire import service_model

        services = (["s3"] if scenario.buckets else []) + ["sts"] + (["kms"] if scenario.keys else []) \
            + (["sqs"] if scenario.queues else [])
        for name in services:
            service_model(name)
        if scenario.buckets:
            with moto.lock:
                if "s3" not in moto.app_instances:
                    moto.app_instances["s3"] = moto.create_app("s3")
    except Exception:  # warming is an optimisation: the request path loads the same lazily
        log.debug("sandbox: warm-up failed", exc_info=True)


def _start(scenario: Scenario, *, port: int, log_dir: Path | None, warm: bool) -> SandboxHandle:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    # moto's server application, called in-process for every forwarded request.
    moto = DomainDispatcherApplication(create_backend_app)
    trail: Trail | None = None
    try:
        world, creds, trail, identities = _state(scenario, log_dir)
        try:
            front = _FrontServer(("127.0.0.1", port), _Handler)
        except OSError as err:
            raise SandboxError(f"{scenario.source}: cannot listen on 127.0.0.1:{port}: {err.strerror}; "
                               "pick another --port") from err
        front.gateway = Gateway(world, creds, trail, moto, Seeder(scenario))
        handle = SandboxHandle(scenario, world, creds, trail, front, moto, identities, log_dir)
        if warm:
            threading.Thread(target=_warm, args=(scenario, moto), name="rolesmith-sandbox-warm", daemon=True).start()
        return handle
    except BaseException:
        if trail is not None:
            trail.close()  # removes its (empty) JSON Lines file
        _reset_moto()
        raise


class Sandbox:
    """``with Sandbox("examples/secure_inbox.yaml") as sb: env = sb.env_for("service/ReportWriter")``."""

    def __init__(self, scenario_path: str | Path, *, port: int = 0, log_dir: str | Path | None = None,
                 warm: bool = False) -> None:
        self._args = (scenario_path, port, log_dir, warm)
        self._handle: SandboxHandle | None = None

    def __enter__(self) -> SandboxHandle:
        path, port, log_dir, warm = self._args
        self._handle = start_sandbox(path, port=port, log_dir=log_dir, warm=warm)
        return self._handle

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.stop()


def describe(handle: SandboxHandle) -> Iterator[str]:
    """Lines the CLI prints: endpoint, then each principal's environment (sandbox-only credentials)."""
    yield f"rolesmith sandbox: {handle.endpoint_url} (scenario {handle.scenario.source}, region {handle.region})"
    if handle.log_dir is not None:
        yield f"CloudTrail log files: {handle.log_dir}/AWSLogs/"
    for name, arn in handle.principals():
        yield ""
        yield f"# {name}  ({arn})"
        for k, v in handle.env_for(name).items():
            yield f"export {k}={json.dumps(v) if ' ' in v else v}"
