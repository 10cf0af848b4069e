"""The routing cost model and its calibration profile.

For operation ``op`` on backend ``b`` with ``w`` work units and ``m`` bytes to
move to the device, the estimated time is::

    t(op, b) = fixed_ns[op, b] + ns_per_unit[op, b] * w + transfer_ns_per_byte[b] * m

The coefficients are measured on the host by ``tickwire calibrate`` and kept in
a JSON profile. A default profile measured on the development machine ships
with the package; ``TICKWIRE_CALIBRATION_PROFILE`` (or ``--calibration-profile``)
points at a profile measured on the host that serves.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_PROFILE_RESOURCE = "default_profile.json"


@dataclass(frozen=True)
class Coefficients:
    """Linear cost of one operation on one backend, in nanoseconds."""

    fixed_ns: float
    ns_per_unit: float

    def estimate(self, work: float) -> float:
        """Estimated compute time in nanoseconds for ``work`` units."""
        return self.fixed_ns + self.ns_per_unit * work


@dataclass
class CostProfile:
    """Per-backend transfer cost and per-operation coefficients.

    ``operations[op][backend]`` holds :class:`Coefficients`;
    ``transfer_ns_per_byte[backend]`` the cost of moving input to the backend.
    """

    operations: dict[str, dict[str, Coefficients]] = field(default_factory=dict)
    transfer_ns_per_byte: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def estimate_ns(self, op: str, backend: str, work: float, moved_bytes: int) -> float:
        """Estimated wall time in ns; ``inf`` when the profile knows nothing of the pair."""
        coeffs = self.operations.get(op, {}).get(backend)
        if coeffs is None:
            return math.inf
        return coeffs.estimate(work) + self.transfer_ns_per_byte.get(backend, 0.0) * moved_bytes

    # ----- persistence ------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The profile as a JSON-serialisable dict."""
        return {
            "metadata": self.metadata,
            "transfer_ns_per_byte": self.transfer_ns_per_byte,
            "operations": {
                op: {
                    b: {"fixed_ns": c.fixed_ns, "ns_per_unit": c.ns_per_unit}
                    for b, c in per.items()
                }
                for op, per in sorted(self.operations.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CostProfile:
        """Parse a dict written by :meth:`to_json`; ``ValueError`` if malformed."""
        try:
            ops = {
                op: {
                    b: Coefficients(float(c["fixed_ns"]), float(c["ns_per_unit"]))
                    for b, c in per.items()
                }
                for op, per in data.get("operations", {}).items()
            }
            transfer = {b: float(v) for b, v in data.get("transfer_ns_per_byte", {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed calibration profile: {exc}") from exc
        return cls(ops, transfer, dict(data.get("metadata", {})))

    def merged_over(self, base: CostProfile) -> CostProfile:
        """This profile's entries, with ``base`` filling the pairs it lacks."""
        ops = {op: dict(per) for op, per in base.operations.items()}
        for op, per in self.operations.items():
            ops.setdefault(op, {}).update(per)
        transfer = {**base.transfer_ns_per_byte, **self.transfer_ns_per_byte}
        return CostProfile(ops, transfer, {**base.metadata, **self.metadata})

    def save(self, path: str | Path) -> None:
        """Write the profile as JSON to ``path``."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")


def load_profile(path: str | Path | None = None) -> CostProfile:
    """The shipped default profile, overlaid with the one at ``path`` if given.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        A profile is malformed.
    """
    text = resources.files("tickwire.routing").joinpath(DEFAULT_PROFILE_RESOURCE).read_text()
    base = CostProfile.from_json(json.loads(text))
    if path is None:
        return base
    return CostProfile.from_json(json.loads(Path(path).read_text())).merged_over(base)
