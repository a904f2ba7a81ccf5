"""botocore service models, CloudTrail casing and redaction for recorded calls: ``rolesmith.trail.wire``."""

from __future__ import annotations

from rolesmith.trail.wire import (REDACTED, available_services, event_source, lower_camel, operation_model,
                                  service_for_signing_name, to_request_parameters)
from rolesmith.trail.wire import find_service_model as service_model

__all__ = ["REDACTED", "available_services", "event_source", "lower_camel", "operation_model", "service_for_signing_name",
           "service_model", "to_request_parameters"]
