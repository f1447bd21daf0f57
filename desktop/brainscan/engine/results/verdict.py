"""One verdict per series, from its slices' classes, probabilities and picture checks.

The rule (:class:`VerdictRule`, its parameters from the model contract's ``series_rule`` when it
carries one):

- failed frames (error rows) are left out; the other frames are the series' *slices*;
- a slice is *in domain* unless the picture checks judged it out (``in_domain`` False; not judged,
  as in older results, counts as in domain);
- fewer than ``max(1, ceil(min_in_domain_share * slices))`` slices in domain: ``out_of_domain``;
- else a tumour class is the verdict when at least ``k = min(min_agreeing_slices, in-domain slices)``
  in-domain slices have it as their top class at ``p >= min_probability``; when several classes
  qualify, the one with the most such slices (then the higher mean probability of those slices,
  then the model's class order);
- else the negative class (``notumor``); a model without one gives the class most in-domain slices
  show (ties as above).

Probabilities are compared as ``results.csv`` writes them (six decimals), so a run and its CSV agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from brainscan.engine.model.contract import ModelContract, series_rule_problems
from brainscan.engine.model.inference import negative_class_index
from brainscan.engine.results.names import display_name, display_text
from brainscan.engine.results.record import FrameRecord

OUT_OF_DOMAIN = "out_of_domain"
NO_VERDICT = ""  # a series with no classified slice (every frame failed)


def probability_text(value: float) -> str:
    """``0.90``, or as many digits as the value needs (``0.925``)."""
    return f"{value:.2f}" if round(value, 2) == value else f"{value:g}"


@dataclass(frozen=True)
class VerdictRule:
    """When a series is called a tumour class, no tumour, or out of domain (see the module notes)."""

    min_agreeing_slices: int = 3
    min_probability: float = 0.9
    min_in_domain_share: float = 0.25
    false_call_rate: float = 0.0  # > 0: the agreeing slices needed follow the series' length (see agreeing_needed)
    false_series_rate: float = 0.01

    def agreeing_needed(self, in_domain: int) -> int:
        """In-domain slices that must agree on a tumour class.

        Without a ``false_call_rate``: ``min_agreeing_slices`` (all slices of a shorter series). With one
        (the share of normal in-domain frames called a tumour at ``min_probability``, measured on validation
        by the trainer): the smallest ``k`` such that a normal series of this many in-domain slices has at
        most ``false_series_rate`` chance of ``k`` or more false slices (binomial), so a short series needs
        fewer slices than a long one.
        """
        if in_domain <= 0:
            return 1
        if self.false_call_rate <= 0.0:
            return min(self.min_agreeing_slices, in_domain)
        return min(in_domain, binomial_quantile(in_domain, self.false_call_rate, self.false_series_rate))

    def __post_init__(self) -> None:
        problems = series_rule_problems(asdict(self))
        if problems:
            raise ValueError("invalid series verdict rule: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> VerdictRule:
        """The rule a contract's ``series_rule`` states (keys left out keep their defaults).

        Raises
        ------
        ValueError
            An unknown key or a value out of range (a contract refuses them already).
        """
        problems = series_rule_problems(values or {})
        if problems:
            raise ValueError("invalid series verdict rule: " + "; ".join(problems))
        return cls(**dict(values or {}))

    @classmethod
    def from_contract(cls, contract: ModelContract) -> VerdictRule:
        return cls.from_mapping(contract.series_rule)

    def to_dict(self) -> dict[str, Any]:
        """Its parameters and its sentence, as ``results.json`` holds them."""
        return {**asdict(self), "text": self.describe()}

    def describe(self) -> str:
        """The rule in one plain sentence."""
        n = self.min_agreeing_slices
        share = f"{100 * self.min_in_domain_share:g} %"
        if self.false_call_rate > 0.0:
            examples = ", ".join(f"{self.agreeing_needed(length)} of {length}" for length in (1, 20, 60, 192))
            how_many = (f"k of its in-domain slices, k growing with their number so that a normal series reaches k "
                        f"false slices with chance at most {100 * self.false_series_rate:g} % at the validated "
                        f"false-call rate of {100 * self.false_call_rate:.2g} % a slice ({examples}),")
        else:
            how_many = f"{n} of its in-domain slices (all of them when it has fewer)"
        return (f"A series is out of domain when fewer than {share} of its classified slices are in domain; "
                f"otherwise it is called a tumour class when at least {how_many} show that class on top at "
                f"p >= {probability_text(self.min_probability)}, and no tumour when no class does (a model without "
                f"a no-tumour class: the class most in-domain slices show).")


def binomial_quantile(n: int, p: float, tail: float) -> int:
    """The smallest ``k >= 1`` with ``P(Binomial(n, p) >= k) <= tail`` (``n + 1`` when even ``n`` is too likely)."""
    below = 0.0  # P(X < k)
    pmf = (1.0 - p) ** n  # P(X = 0)
    for k in range(1, n + 2):
        below += pmf
        if 1.0 - below <= tail:
            return k
        pmf *= (n - k + 1) / k * p / (1.0 - p) if p < 1.0 else 0.0
    return n + 1


@dataclass(frozen=True)
class Verdict:
    """A series' verdict.

    Attributes
    ----------
    label:
        A tumour class, the negative class (``notumor``), :data:`OUT_OF_DOMAIN`, or :data:`NO_VERDICT`
        when no slice was classified.
    support:
        In-domain slices that agree with the label (for the negative class: every in-domain slice).
    in_domain, slices:
        In-domain slices, and classified slices (failed frames left out).
    text:
        The verdict in words: ``"meningioma: 4 of 120 in-domain slices at p >= 0.90"``.
    """

    label: str
    support: int
    in_domain: int
    slices: int
    text: str

    @property
    def display_label(self) -> str:
        """The label for people ("No tumour", "Out of domain"; "" for no verdict)."""
        return display_name(self.label)

    @property
    def display_text(self) -> str:
        """The text for people: ``"Meningioma: 4 of 120 in-domain slices at p >= 0.90"``."""
        return display_text(self.text, self.label)

    @property
    def detail(self) -> str:
        """The text without its leading label: ``"4 of 120 in-domain slices at p >= 0.90"``."""
        prefix = f"{self.label}: "
        return self.text[len(prefix):] if self.label and self.text.startswith(prefix) else self.text


@dataclass
class _Votes:
    count: int = 0
    total: float = 0.0

    def add(self, probability: float) -> None:
        self.count += 1
        self.total += probability if not math.isnan(probability) else 0.0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass
class VerdictTally:
    """A series' verdict built one record at a time (memory stays flat however long the series)."""

    classes: tuple[str, ...]
    rule: VerdictRule = field(default_factory=VerdictRule)
    slices: int = 0
    in_domain: int = 0
    agreeing: dict[str, _Votes] = field(default_factory=dict)  # top class at p >= min_probability, in domain
    votes: dict[str, _Votes] = field(default_factory=dict)  # top class, in domain

    def add(self, record: FrameRecord) -> None:
        if not record.ok:
            return
        self.slices += 1
        if record.in_domain is False:
            return
        self.in_domain += 1
        label = record.label
        probability = record.probability(label)
        if math.isnan(probability):
            probability = record.confidence
        probability = round(probability, 6) if not math.isnan(probability) else math.nan
        self.votes.setdefault(label, _Votes()).add(probability)
        if probability >= self.rule.min_probability:  # False for NaN
            self.agreeing.setdefault(label, _Votes()).add(probability)

    def verdict(self) -> Verdict:
        rule = self.rule
        at = f"at p >= {probability_text(rule.min_probability)}"
        if self.slices == 0:
            return Verdict(NO_VERDICT, 0, 0, 0, "no classified slice (every frame failed)")
        needed = max(1, math.ceil(rule.min_in_domain_share * self.slices))
        if self.in_domain < needed:
            return Verdict(OUT_OF_DOMAIN, 0, self.in_domain, self.slices,
                           f"{OUT_OF_DOMAIN}: {self.in_domain} of {self.slices} slices in domain "
                           f"({needed} needed)")
        negative = negative_class_index(self.classes)
        negative_name = self.classes[negative] if negative is not None else None
        k = rule.agreeing_needed(self.in_domain)
        qualifying = [name for name, votes in self.agreeing.items() if name != negative_name and votes.count >= k]
        if qualifying:
            label = self._best(qualifying, self.agreeing)
            support = self.agreeing[label].count
            return Verdict(label, support, self.in_domain, self.slices,
                           f"{label}: {support} of {self.in_domain} in-domain slices {at}")
        if negative_name is not None:
            return Verdict(negative_name, self.in_domain, self.in_domain, self.slices,
                           f"{negative_name}: {self.in_domain} in-domain slices, no tumour class on {k} or more {at}")
        label = self._best(list(self.votes), self.votes)
        support = self.votes[label].count
        return Verdict(label, support, self.in_domain, self.slices,
                       f"{label}: top class of {support} of {self.in_domain} in-domain slices "
                       f"(no class on {k} {at})")

    def _best(self, names: list[str], tally: Mapping[str, _Votes]) -> str:
        """The most votes, then the higher mean probability, then the model's class order."""
        order = {name: index for index, name in enumerate(self.classes)}
        return min(names, key=lambda name: (-tally[name].count, -tally[name].mean, order.get(name, len(order)), name))


def series_verdict(records: Iterable[FrameRecord], classes: tuple[str, ...], rule: VerdictRule | None = None) -> Verdict:
    """The verdict on one series' records (see the module notes)."""
    tally = VerdictTally(tuple(classes), rule or VerdictRule())
    for record in records:
        tally.add(record)
    return tally.verdict()
