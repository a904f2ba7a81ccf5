"""The sandbox's request decoder is rolesmith's one wire decoder: see ``rolesmith.trail.wire``."""

from __future__ import annotations

from rolesmith.trail.wire import (Call, DecodeError, api_parameters, cloudtrail_parameters, credential_scope, decode,
                                  ec2_parameters, event_source, service_model)

__all__ = ["Call", "DecodeError", "api_parameters", "cloudtrail_parameters", "credential_scope", "decode",
           "ec2_parameters", "event_source", "service_model"]
