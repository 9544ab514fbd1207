"""Federated fine-tuning of MoE models: EMS-FL, enhanced EMS-FL and the synchronous baseline.

Imports neither ZeroMQ nor GNU Radio. Importing this package is cheap: torch and transformers
are loaded on first access of a name below (PEP 562 ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ALGORITHMS",
    "DOMAINS",
    "EMSFL",
    "ClusterData",
    "CycleMetrics",
    "DefaultModelSpec",
    "EnhancedEMSFL",
    "FLConfig",
    "MCQExample",
    "Payload",
    "RunResult",
    "Step",
    "Strategy",
    "SyncFedAvg",
    "assign_experts",
    "build_default_model",
    "build_pair_classifier",
    "configure_determinism",
    "federated_split",
    "load_mcqa_jsonl",
    "load_model",
    "load_sentence_pairs",
    "make_strategy",
    "pair_accuracy",
    "run_learning",
    "run_timeline",
    "use_padded_gemms",
    "weighted_average",
]

_WHERE = {
    "ALGORITHMS": "config",
    "FLConfig": "config",
    "DOMAINS": "data",
    "ClusterData": "data",
    "MCQExample": "data",
    "federated_split": "data",
    "load_mcqa_jsonl": "data",
    "load_sentence_pairs": "data",
    "EMSFL": "emsfl",
    "EnhancedEMSFL": "emsfl_enhanced",
    "SyncFedAvg": "fedavg",
    "configure_determinism": "determinism",
    "use_padded_gemms": "padded_gemm",
    "DefaultModelSpec": "model",
    "build_default_model": "model",
    "load_model": "model",
    "Payload": "payload",
    "weighted_average": "payload",
    "assign_experts": "splitting",
    "build_pair_classifier": "classify",
    "pair_accuracy": "classify",
    "Step": "strategy",
    "Strategy": "strategy",
    "CycleMetrics": "timeline",
    "RunResult": "timeline",
    "make_strategy": "timeline",
    "run_learning": "timeline",
    "run_timeline": "timeline",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"testbed.fl.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'testbed.fl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
