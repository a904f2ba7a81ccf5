"""``rolesmith record -- CMD``: run a workload once, capture every AWS call it makes, build its policies.

Capture methods (``RecordOptions.capture``): ``hook`` (botocore event handlers injected into Python
children through ``sitecustomize``), ``proxy`` (a recording proxy on 127.0.0.1 for every other
SDK), ``csm`` (client-side monitoring datagrams: actions only, no resources); ``auto`` = hook + proxy.
"""

from __future__ import annotations

from rolesmith.record.session import RecordOptions, RecordResult, record

__all__ = ["RecordOptions", "RecordResult", "record"]
