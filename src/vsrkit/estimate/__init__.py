"""Predicted peak GPU memory, host memory and time per frame of a plan, from the tensors the
engines hold (``common`` arithmetic, one module per engine). Pure functions: the planner calls
them for many candidate settings before any weight is read."""

from .common import Estimate, rates

__all__ = ["Estimate", "rates"]
