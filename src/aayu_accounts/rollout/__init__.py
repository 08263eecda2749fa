"""Safe rollout: feature flags, the legacy and new paths, shadow writes, auto-rollback.

The evaluation core (``flag.snapshot``, ``bucketing``, ``path_router``, ``legacy``) imports no
other domain, so identity can ask it which path a sign-in takes (DESIGN.md, "Which area may
import which").
"""
