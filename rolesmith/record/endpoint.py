"""The local AWS endpoint ``--sandbox`` runs the child against.

Seam: ``start_endpoint(scenario)`` returns a running endpoint; rolesmith.sandbox (the enforcing
multi-account sandbox) plugs in here. Until it exists, a moto server on 127.0.0.1 stands in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rolesmith.errors import RolesmithError

DUMMY_KEY = "AKIAROLESMITHSANDBOX"  # moto accepts any key; these are not credentials
DUMMY_SECRET = "rolesmith-sandbox-not-a-secret"


class EndpointError(RolesmithError):
    exit_code = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint:
    url: str
    env: dict[str, str] = field(default_factory=dict)  # what the child needs: endpoint, credentials, region
    stop: Callable[[], None] = lambda: None


def start_endpoint(scenario: Path | None) -> Endpoint:
    if scenario is not None:
        raise EndpointError(f"{scenario}: sandbox scenarios need rolesmith.sandbox, which this build lacks; "
                            "run without --scenario to record against a plain moto server")
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
