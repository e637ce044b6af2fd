"""Overfitting verdicts in words: the thresholds and sentences the report and
``backsweep show`` share.

========================  =====================================================
Deflated Sharpe (DSR)     >= 0.95 strong; 0.5 to 0.95 weak; < 0.5 not significant
PBO                       < 0.2 low; 0.2 to 0.5 moderate; >= 0.5 high (likely overfit)
Walk-forward efficiency   >= 0.5 robust; 0 to 0.5 weak; < 0 fails out of sample
========================  =====================================================

DSR is the probability that the selected strategy's true Sharpe is above zero after
deflating for the number of trials (Bailey & Lopez de Prado); PBO is the probability that
the in-sample best configuration ranks below the median out of sample (CSCV); WFE is the
out-of-sample performance as a fraction of the in-sample performance (Pardo's 50% rule).

A verdict is a :class:`Verdict`: ``level`` ("good", "warn" or "bad"), ``sentence`` and a
short ``word`` ("strong", "moderate", ...); ``level, sentence = verdict[:2]``.

Example:
    >>> v = dsr_verdict(0.97, 24)
    >>> v.level, v.word
    ('good', 'strong')
    >>> pbo_verdict(0.62).word, wfe_verdict(-0.1).level
    ('high', 'bad')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sweep.record import SweepRecord

__all__ = [
    "DSR_STRONG",
    "DSR_WEAK",
    "PBO_HIGH",
    "PBO_LOW",
    "WFE_GOOD",
    "WFE_WEAK",
    "Check",
    "Verdict",
    "dsr_verdict",
    "overfitting_checks",
    "pbo_verdict",
    "threshold_rules",
    "wfe_verdict",
]

DSR_STRONG = 0.95  # DSR >= this: the selected Sharpe is very likely genuine
DSR_WEAK = 0.5  # DSR in [DSR_WEAK, DSR_STRONG): weak evidence; below: not significant
PBO_LOW = 0.2  # PBO < this: low probability of backtest overfitting
PBO_HIGH = 0.5  # PBO >= this: high (the IS winner is below the OOS median more often than not)
WFE_GOOD = 0.5  # WFE >= this: OOS keeps at least half of the IS performance
WFE_WEAK = 0.0  # WFE in [WFE_WEAK, WFE_GOOD): weak; below: OOS loses money where IS made it

_UNAVAILABLE = {
    "dsr": "fewer than two trials",
    "pbo": "no per-block return statistics, or too many trials",
    "wfe": "undefined when the in-sample return is not positive",
}


class Verdict(NamedTuple):
    """A statistic judged: ``level`` good/warn/bad (a CSS class too), a sentence, a word."""

    level: str
    sentence: str
    word: str


def dsr_verdict(dsr: float, n_trials: Any) -> Verdict:
    """The verdict on a Deflated Sharpe Ratio (a probability in [0, 1])."""
    if dsr >= DSR_STRONG:
        return Verdict("good", f"DSR {dsr:.2f}: the selected Sharpe is very likely genuine "
                       f"after deflating for {n_trials} trials (strong, DSR ≥ {DSR_STRONG}).",
                       "strong")
    if dsr >= DSR_WEAK:
        return Verdict("warn", f"DSR {dsr:.2f}: weak evidence — the selected Sharpe is "
                       f"probably positive after deflating for {n_trials} trials, but not "
                       f"conclusively ({DSR_WEAK} ≤ DSR < {DSR_STRONG}).", "weak")
    return Verdict("bad", f"DSR {dsr:.2f}: not significant — after deflating for {n_trials} "
                   "trials the selected Sharpe is what luck alone would likely produce "
                   f"(DSR < {DSR_WEAK}).", "not significant")


def pbo_verdict(pbo: float) -> Verdict:
    """The verdict on a Probability of Backtest Overfitting in [0, 1]."""
    if pbo < PBO_LOW:
        return Verdict("good", f"PBO {pbo:.2f}: low probability of overfitting — the "
                       "in-sample winner usually stays above the median out of sample "
                       f"(PBO < {PBO_LOW}).", "low")
    if pbo < PBO_HIGH:
        return Verdict("warn", f"PBO {pbo:.2f}: moderate probability that the in-sample "
                       "winner underperforms the median out of sample — treat the selection "
                       f"with caution ({PBO_LOW} ≤ PBO < {PBO_HIGH}).", "moderate")
    return Verdict("bad", f"PBO {pbo:.2f}: high probability that the in-sample winner "
                   "underperforms the median out of sample — likely overfit "
                   f"(PBO ≥ {PBO_HIGH}).", "high")


def wfe_verdict(wfe: float) -> Verdict:
    """The verdict on a walk-forward efficiency (OOS / IS annualised return)."""
    pct = f"{wfe * 100:.0f}%"
    if wfe >= WFE_GOOD:
        return Verdict("good", f"WFE {wfe:.2f}: out of sample keeps {pct} of the in-sample "
                       f"performance — robust (WFE ≥ {WFE_GOOD}).", "robust")
    if wfe >= WFE_WEAK:
        return Verdict("warn", f"WFE {wfe:.2f}: out of sample keeps only {pct} of the "
                       "in-sample performance — much of the edge is lost "
                       f"({WFE_WEAK:g} ≤ WFE < {WFE_GOOD}).", "weak")
    return Verdict("bad", f"WFE {wfe:.2f}: out of sample loses where in sample wins — the "
                   f"selection does not carry forward (WFE < {WFE_WEAK:g}).", "fails")


def threshold_rules() -> dict[str, str]:
    """The thresholds in words, per statistic."""
    return {
        "dsr": f"DSR ≥ {DSR_STRONG} strong, {DSR_WEAK} to {DSR_STRONG} weak, below "
               f"{DSR_WEAK} not significant",
        "pbo": f"PBO below {PBO_LOW} low, {PBO_LOW} to {PBO_HIGH} moderate, {PBO_HIGH} or "
               "more high",
        "wfe": f"WFE {WFE_GOOD} or more robust, {WFE_WEAK:g} to {WFE_GOOD} weak, below "
               f"{WFE_WEAK:g} fails",
    }


@dataclass(frozen=True)
class Check:
    """One headline overfitting statistic of a sweep: ``key`` ("dsr", "pbo" or "wfe"), its
    value (None: not available, ``why``), the verdict, and what it averages over."""

    key: str
    value: float | None
    verdict: Verdict | None
    why: str = ""
    over: str = ""

    @property
    def sentence(self) -> str:
        if self.verdict is None:
            return f"{self.key.upper()}: not available ({self.why})."
        return self.verdict.sentence + (f" Mean over {self.over}." if self.over else "")


def overfitting_checks(record: SweepRecord) -> list[Check]:
    """The sweep's headline DSR, PBO (and WFE for a walk-forward) with verdicts.

    A walk-forward's values are its summary's (means over the folds); a plain sweep's are
    the means over its windows of ``record.overfit``. The number of trials a DSR was
    deflated for is the windows' (or folds') common count, or their range. Empty when the
    record has neither (a sweep not finished yet).

    Example:
        >>> from sweep.record import SweepRecord, WindowVerdict
        >>> rec = SweepRecord.__new__(SweepRecord)
        >>> rec.walk_forward = None
        >>> rec.overfit = [WindowVerdict(0, 12, dsr=0.99, pbo=0.1)]
        >>> [(c.key, c.verdict.word) for c in overfitting_checks(rec)]
        [('dsr', 'strong'), ('pbo', 'low')]
    """
    verdicts = record.overfit or []
    counts = sorted({v.n_trials for v in verdicts})
    n_trials: Any = ("?" if not counts else counts[0] if len(counts) == 1
                     else f"{counts[0]}–{counts[-1]}")
    judges = {"dsr": lambda v: dsr_verdict(v, n_trials), "pbo": pbo_verdict,
              "wfe": wfe_verdict}
    wf = record.walk_forward
    if wf is not None:
        values = {"dsr": wf.dsr, "pbo": wf.pbo, "wfe": wf.wfe}
        over = {"dsr": len(wf.dsr_by_fold), "pbo": len(wf.pbo_by_fold), "wfe": 0}
        unit = "folds"
    elif verdicts:
        values = {"dsr": record.mean("dsr"), "pbo": record.mean("pbo")}
        over = {k: sum(getattr(v, k) is not None for v in verdicts) for k in values}
        unit = "windows"
    else:
        return []
    checks = []
    for key, value in values.items():
        if value is None:
            notes = [v.pbo_note for v in verdicts if v.pbo_note] if key == "pbo" else []
            checks.append(Check(key, None, None, why=notes[0] if notes else _UNAVAILABLE[key]))
        else:
            checks.append(Check(key, value, judges[key](value),
                                over=f"{over[key]} {unit}" if over[key] > 1 else ""))
    return checks
