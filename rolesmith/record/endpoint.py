"""The local AWS endpoint ``--sandbox`` runs the child against.

``start_endpoint(scenario)`` returns a running endpoint: rolesmith.sandbox (the enforcing
multi-account sandbox, running the child as the scenario's principal) with the given scenario, or
without one with ``default_scenario.yaml`` (one account, one user allowed everything), so the run
still gets the sandbox's CloudTrail; a plain moto server on 127.0.0.1 with dummy credentials only
when rolesmith.sandbox cannot be imported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rolesmith.errors import RolesmithError

DEFAULT_SCENARIO = Path(__file__).with_name("default_scenario.yaml")
DUMMY_KEY = "AKIAROLESMITHSANDBOX"  # moto accepts any key; these are not credentials
DUMMY_SECRET = "rolesmith-sandbox-not-a-secret"


class EndpointError(RolesmithError):
    exit_code = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    url: str
    env: dict[str, str] = field(default_factory=dict)  # what the child needs: endpoint, credentials, region
    # Credentials for rolesmith's own calls (LookupEvents, Access Advisor, GetCallerIdentity), when
    # the workload's own may not make them (an enforcing sandbox); None: the workload's.
    operator_env: dict[str, str] | None = None
    # The same for another account of the endpoint (its CloudTrail is per account); None: one account.
    operator_env_for: Callable[[str], dict[str, str]] | None = None
    stop: Callable[[], None] = lambda: None


def start_endpoint(scenario: Path | None) -> Endpoint:
    try:
        from rolesmith.sandbox import start_sandbox
    except ImportError:
        if scenario is not None:
            raise
        return _start_moto()
    # The enforcing sandbox: the child runs as the scenario's run_as principal.
    handle = start_sandbox(scenario if scenario is not None else DEFAULT_SCENARIO)
    env = handle.env_for(handle.default_principal)
    operator = getattr(handle, "operator_env", None)
    return Endpoint(url=handle.endpoint_url, env=env, stop=handle.stop,
                    operator_env=operator() if callable(operator) else None,
                    operator_env_for=operator if callable(operator) else None)


def _start_moto() -> Endpoint:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as err:
        raise EndpointError("--sandbox needs moto: pip install 'rolesmith[sandbox]'") from err
    # werkzeug logs every request at INFO through the root logger: keep the child's terminal clean.
    quiet = logging.getLogger("werkzeug")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": DUMMY_KEY, "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    return Endpoint(url=url, env=env, stop=server.stop)
