"""Scheduling: the fair queue, the worker registry, the scheduler and its tasks."""
