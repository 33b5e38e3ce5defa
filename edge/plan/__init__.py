"""Execution plans: the builder's decisions as ordered steps on backends (see :mod:`edge.plan.model`)."""

from edge.plan.lower import FALLBACK_BACKEND, HOST, lower, storage_dtype
from edge.plan.model import STEP_KINDS, ExecutionPlan, PlanStep, PlanTensor, Segment

__all__ = [
    "FALLBACK_BACKEND",
    "HOST",
    "STEP_KINDS",
    "ExecutionPlan",
    "PlanStep",
    "PlanTensor",
    "Segment",
    "lower",
    "storage_dtype",
]
