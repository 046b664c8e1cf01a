"""Dobby: dispatch coding-agent tasks to many machines over SSH."""

__version__ = "0.1.0"
