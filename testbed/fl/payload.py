"""Upload/download payloads: a dict of tensors plus small metadata, safetensors on the wire."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["Payload", "canonical_safetensors", "weighted_average"]


def canonical_safetensors(raw: bytes) -> bytes:
    """``raw`` with its JSON header in canonical form (sorted keys, no spaces, padded)."""
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


@dataclass(frozen=True)
class Payload:
    """What one device (or the satellite) sends in one exchange.

    Attributes
    ----------
    tensors
        Canonical LoRA keys (see :mod:`testbed.fl.lora`) to CPU tensors.
    cluster, device
        Sender's cluster index and device index within it (``-1``: the satellite).
    cycle
        Orbital cycle (1-based).
    stage
        ``"experts"``, ``"gate"``, ``"full"`` or ``"global"``.
    expert_ids
        Global ids of the experts whose factors are inside.
    num_samples
        Aggregation weight :math:`n_i` (local training examples) [examples].
    """

    tensors: dict[str, torch.Tensor]
    cluster: int
    device: int
    cycle: int
    stage: str
    expert_ids: tuple[int, ...] = ()
    num_samples: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        """String metadata as stored in the safetensors header."""
        return {
            "cluster": str(self.cluster),
            "device": str(self.device),
            "cycle": str(self.cycle),
            "stage": self.stage,
            "expert_ids": json.dumps(list(self.expert_ids)),
            "num_samples": str(self.num_samples),
            "extra": json.dumps(self.extra),
        }

    def to_bytes(self) -> bytes:
        """safetensors serialisation (tensors made contiguous), byte-for-byte reproducible.

        The safetensors writer emits its ``__metadata__`` map in an order that changes from
        process to process (a hash map), so the same payload would hash differently in two
        runs; the header is rewritten canonically (keys sorted, compact, space-padded to a
        multiple of 8 bytes as the format requires). Tensor offsets are relative to the data
        section, so the data is untouched.
        """
        from safetensors.torch import save

        raw = save({k: v.contiguous() for k, v in self.tensors.items()}, metadata=self.metadata())
        return canonical_safetensors(raw)

    @classmethod
    def from_bytes(cls, data: bytes) -> Payload:
        """Inverse of :meth:`to_bytes`."""
        from safetensors.torch import load

        tensors = load(data)
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + n].decode("utf-8")).get("__metadata__") or {}
        return cls(
            tensors=tensors,
            cluster=int(meta["cluster"]),
            device=int(meta["device"]),
            cycle=int(meta["cycle"]),
            stage=meta["stage"],
            expert_ids=tuple(json.loads(meta["expert_ids"])),
            num_samples=int(meta["num_samples"]),
            extra=json.loads(meta.get("extra", "{}")),
        )

    @property
    def nbytes(self) -> int:
        """Size on the wire [bytes] (safetensors header + data)."""
        return len(self.to_bytes())


def weighted_average(payloads: Sequence[Payload]) -> dict[str, torch.Tensor]:
    """Per-key sample-weighted mean over the payloads that carry the key (eq. 28/35/36).

    .. math::

        \\bar w_{\\kappa} = \\frac{\\sum_{i \\in \\mathcal{U}_\\kappa} n_i \\, w_{i,\\kappa}}
                                 {\\sum_{i \\in \\mathcal{U}_\\kappa} n_i}

    where :math:`\\mathcal{U}_\\kappa` is the set of *received* payloads holding key
    :math:`\\kappa`. A key owned by one cluster is therefore replaced by its owner's average and
    never shrunk by the weights of payloads that do not carry it; a payload lost on the link
    simply drops out of :math:`\\mathcal{U}_\\kappa`.
    """
    sums: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    for p in payloads:
        if p.num_samples <= 0:
            raise ValueError("num_samples must be positive")
        for k, v in p.tensors.items():
            w = float(p.num_samples)
            acc = v.double() * w
            if k in sums:
                sums[k] += acc
                weights[k] += w
            else:
                sums[k], weights[k] = acc, w
    return {
        k: (s / weights[k]).to(next(p.tensors[k] for p in payloads if k in p.tensors).dtype)
        for k, s in sums.items()
    }
