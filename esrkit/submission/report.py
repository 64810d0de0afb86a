"""The outcome of a submission check: one line per rule, with the reason, and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    """PASS and FAIL are verdicts; SKIP means the rule could not run (it does not count as passed)."""

    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict and the reason, written so that a FAIL says what to change."""

    rule: str
    status: Status
    reason: str

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS


def passed(rule: str, reason: str) -> RuleResult:
    return RuleResult(rule, Status.PASS, reason)


def failed(rule: str, reason: str) -> RuleResult:
    return RuleResult(rule, Status.FAIL, reason)


def skipped(rule: str, reason: str) -> RuleResult:
    return RuleResult(rule, Status.SKIP, f"not run: {reason}")


def verdict(rule: str, ok: bool, reason: str) -> RuleResult:
    return RuleResult(rule, Status.PASS if ok else Status.FAIL, reason)


@dataclass
class CheckReport:
    """Every rule's result in table order, plus the header lines that say what was checked how."""

    header: list[str] = field(default_factory=list)
    results: list[RuleResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True only when every rule passed (a skipped rule is not a pass)."""
        return bool(self.results) and all(r.passed for r in self.results)

    def result(self, rule: str) -> RuleResult:
        """The result of the rule named ``rule``."""
        for r in self.results:
            if r.rule == rule:
                return r
        raise KeyError(f"no rule {rule!r} in this report; rules: {[r.rule for r in self.results]}")

    def render(self) -> str:
        """The header, the pass/fail table (one line per rule) and a summary line."""
        width = max(len("rule"), *(len(r.rule) for r in self.results))
        lines = [*self.header, "", f"{'rule':{width}s}  result  reason", f"{'-' * width}  ------  ------"]
        lines += [f"{r.rule:{width}s}  {r.status.value:6s}  {r.reason}" for r in self.results]
        counts = {s: sum(r.status is s for r in self.results) for s in Status}
        summary = "PASS" if self.passed else "FAIL"
        lines.append("")
        lines.append(
            f"{summary}: {counts[Status.PASS]} passed, {counts[Status.FAIL]} failed, "
            f"{counts[Status.SKIP]} not run, of {len(self.results)} rules"
        )
        return "\n".join(lines)
