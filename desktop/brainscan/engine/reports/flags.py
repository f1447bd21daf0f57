"""When a prediction should be looked at by a person: the flag-for-review rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_MIN_CONFIDENCE = 0.6
DEFAULT_MARGIN = 0.15


@dataclass(frozen=True)
class ReviewRule:
    """Flag a prediction whose top class is weak, or whose two best classes are close.

    Parameters
    ----------
    min_confidence:
        A top probability below this is flagged (default 0.6).
    margin:
        A top-two difference below this is flagged (default 0.15).
    """

    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {self.min_confidence}")
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError(f"margin must lie in [0, 1], got {self.margin}")

    def reasons(self, probabilities: Mapping[str, float]) -> list[str]:
        """Why these class probabilities need review (empty: they do not)."""
        ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)
        if not ranked:
            return []
        reasons = []
        top_name, top = ranked[0]
        if top < self.min_confidence:
            reasons.append(f"low confidence ({top:.2f} < {self.min_confidence:.2f})")
        if len(ranked) > 1:
            second_name, second = ranked[1]
            if top - second < self.margin:
                reasons.append(f"{top_name} {top:.2f} and {second_name} {second:.2f} within {self.margin:.2f}")
        return reasons

    def describe(self) -> str:
        return (f"flagged for review when the top probability is below {self.min_confidence:.2f} "
                f"or the two best classes lie within {self.margin:.2f}")
