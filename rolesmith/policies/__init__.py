"""The policies stage: minimal identity, bucket, key and trust policies from the usage graph."""

from rolesmith.policies.build import BuildResult, build_policies
from rolesmith.policies.model import (
    BuildOptions,
    Document,
    Finding,
    IdentityPolicy,
    PolicySet,
    ResourcePolicy,
    TrustPolicy,
)
from rolesmith.policies.synthesize import KEY_ADMIN_ACTIONS, BadKeyAdmin, UnknownPrincipal, policies_from_graph

__all__ = [
    "BadKeyAdmin",
    "BuildOptions",
    "BuildResult",
    "Document",
    "Finding",
    "IdentityPolicy",
    "KEY_ADMIN_ACTIONS",
    "PolicySet",
    "ResourcePolicy",
    "TrustPolicy",
    "UnknownPrincipal",
    "build_policies",
    "policies_from_graph",
]
