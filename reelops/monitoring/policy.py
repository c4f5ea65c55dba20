"""The retraining policy: which findings trigger retraining, how much new labelled data is
needed, and a cooldown in data time so that one change does not start a storm of retrains.

The policy's state (when it last triggered, in data time) is kept by whoever calls it: in
memory here (:class:`PolicyState`), or in the model registry as a tag of the registered
model (``reelops.registry.TriggerState``), so separate processes and pipeline steps see it.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field

@dataclass
class RetrainingPolicy:
    """When to retrain.

    Attributes:
        triggers: verdicts that call for retraining.
        min_alarm_windows: consecutive windows in which one detector must alarm before acting.
            A detector at a 5% false-alarm rate flags a window now and then by chance; three in
            a row by chance happen about once in 8,000 windows, a real change keeps its detector
            alarming. The run is counted per detector: stray alarms of different detectors in
            neighbouring windows (on ml-100k's unchanged continuation, a user-age alarm beside a
            popularity one) are not one change.
        alarm_span: the windows the run is counted in: 3 (the default) asks for 3 in a row;
            more allows gaps (3 of 5). On ml-100k's unchanged continuation any span above 3
            retrains at every cut (its stray user-age alarms come in clusters), so the default
            asks for a clean run.
        min_new_labels: the least new labelled ratings (after the model's training data).
        cooldown_seconds: data time that must pass after a retrain trigger before the next.
    """

    triggers: tuple = ("data", "concept", "both")
    min_alarm_windows: int = 3
    alarm_span: int = 3
    min_new_labels: int = 1000
    cooldown_seconds: int = 7 * 86_400


@dataclass
class Decision:
    """The policy's answer and every reason behind it."""

    retrain: bool
    reasons: list = field(default_factory=list)
    data_time: int | None = None
    alarm_windows: int = 0
    new_labels: int = 0
    # The last trigger the decision saw (the compare of the registry's compare-and-set).
    last_trigger_data_time: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class PolicyState:
    """Where the policy remembers its last trigger: in memory (``registry.TriggerState`` keeps it in the registry)."""

    def __init__(self):
        self._memory: dict = {}

    def load(self) -> dict:
        return dict(self._memory)

    def save(self, state: dict) -> None:
        self._memory = dict(state)


def decide(findings: list, new_labels: int, data_time: int, policy: RetrainingPolicy | None = None,
           state: PolicyState | None = None, record: bool = True) -> Decision:
    """Decide whether to retrain from a sequence of window findings.

    Args:
        findings: :class:`reelops.monitoring.Findings` of the windows seen, in time order.
        new_labels: labelled ratings newer than the model's training data.
        data_time: the latest timestamp of the data (the policy's clock).
        policy: the thresholds (defaults: :class:`RetrainingPolicy`).
        state: where the last trigger is remembered (default: memory, for this call only).
        record: remember a positive decision (starting the cooldown).
    """
    policy = policy or RetrainingPolicy()
    state = state or PolicyState()
    alarms = [f for f in findings if f.verdict in policy.triggers]
    # For each detector, the most of its alarms within any span of ``alarm_span`` consecutive windows.
    longest, detector_of_longest = 0, None
    names = sorted({name for f in findings for name in f.detectors})
    for name in names:
        flags = [f.verdict in policy.triggers and f.detectors[name].drift if name in f.detectors else False
                 for f in findings]
        for end in range(len(flags)):
            count = sum(flags[max(0, end - policy.alarm_span + 1):end + 1])
            if count > longest:
                longest, detector_of_longest = count, name
    reasons = []
    if longest >= policy.min_alarm_windows:
        kinds = sorted({f.verdict for f in alarms})
        detectors = sorted({name for f in alarms for name, r in f.detectors.items() if r.drift})
        reasons.append(f"{len(alarms)} of {len(findings)} windows alarm, {detector_of_longest} in {longest} of "
                       f"{policy.alarm_span} consecutive windows ({', '.join(kinds)}; detectors: {', '.join(detectors)})")
        wanted = True
    else:
        reasons.append(f"{len(alarms)} alarming window(s), one detector in at most {longest} of {policy.alarm_span} "
                       f"consecutive windows; {policy.min_alarm_windows} are required")
        wanted = False
    if new_labels < policy.min_new_labels:
        reasons.append(f"only {new_labels} new labelled ratings; retraining needs at least {policy.min_new_labels}")
        wanted = False
    last = state.load().get("last_trigger_data_time")
    if last is not None and data_time - last < policy.cooldown_seconds:
        reasons.append(f"in cooldown: the last retrain was triggered {(data_time - last) / 86_400:.1f} days of data ago "
                       f"(cooldown {policy.cooldown_seconds / 86_400:g} days)")
        wanted = False
    decision = Decision(retrain=wanted, reasons=reasons, data_time=int(data_time), alarm_windows=len(alarms),
                        new_labels=int(new_labels), last_trigger_data_time=last)
    if wanted:
        decision.reasons.append("retrain: drift confirmed, enough new labels, no cooldown")
        if record:
            state.save({"last_trigger_data_time": int(data_time),
                        "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    return decision
