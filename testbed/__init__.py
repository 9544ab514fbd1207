"""Testbed orchestration: CLI, scenarios, and (``testbed.fl``) the federated learning side."""

__all__ = ["__version__"]
__version__ = "0.1.0"
