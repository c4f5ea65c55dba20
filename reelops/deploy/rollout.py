"""The rollout model: InferenceService specs per strategy step, and how KServe turns a spec into
revisions, traffic and status.

The registry says what should serve; a deployment makes serving follow it by changing one
InferenceService (built by :func:`reelops.manifests.objects.inference_service`, the very
object the KServe target applies). Every revision pins one model version through its storage
URI; changing the model makes a new revision, changing ``canaryTrafficPercent`` does not.

:class:`ServiceState` reproduces what KServe's controller does with such a spec in
Serverless mode (``pkg/controller/v1beta1/inferenceservice/reconcilers/knative/
ksvc_reconciler.go`` and ``PropagateStatus`` in ``inference_service_status.go`` at commit
aaac4e294dae):

- with ``canaryTrafficPercent: N`` and a rolled-out revision, the latest ready revision gets
  N% (tag ``latest`` when tag routing is on) and the latest rolled-out revision the rest
  (tag ``prev``, only while N < 100); without the field the latest revision gets 100%;
- the latest ready revision becomes ``latestRolledoutRevision`` when it gets 100%, and the
  one before becomes ``previousRolledoutRevision``; when a rolled-out revision is set back
  below 100% while the same revision still holds all traffic (``canaryTrafficPercent: 0``
  after a promotion), ``latestRolledoutRevision`` returns to the previous one.

So: canary = new model with N; promote = remove the field; roll back = 0. Blue-green = new
model at 0 with tag routing (stable keeps all traffic, the new one answers on its ``latest``
route), switch = remove the field, switch back = 0.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

from reelops.manifests.objects import TAG_ROUTING_ANNOTATION as TAG_ROUTING

CANARY, BLUE_GREEN = "canary", "blue-green"
STRATEGIES = (CANARY, BLUE_GREEN)


class DeployError(RuntimeError):
    """A deployment step that cannot be taken (says why; nothing changed, no alias moved)."""


class RolloutError(DeployError):
    """A rollout step that does not apply to the current state (says why)."""


def predictor(spec: dict) -> dict:
    """The predictor component of an InferenceService object."""
    return spec["spec"]["predictor"]


def canary_percent(spec: dict) -> int | None:
    """``canaryTrafficPercent`` of a spec, None when absent."""
    return predictor(spec).get("canaryTrafficPercent")


def template_of(spec: dict) -> str:
    """What makes a revision: the predictor without ``canaryTrafficPercent``, canonical JSON."""
    component = {key: value for key, value in predictor(spec).items() if key != "canaryTrafficPercent"}
    return json.dumps(component, sort_keys=True)


def with_canary(spec: dict, percent: int | None, tag_routing: bool | None = None) -> dict:
    """A copy of ``spec`` with ``canaryTrafficPercent`` set (removed when None), and tag routing on or off."""
    if percent is not None and not 0 <= int(percent) <= 100:
        raise RolloutError(f"canaryTrafficPercent must be within 0-100, got {percent}")
    changed = copy.deepcopy(spec)
    component = predictor(changed)
    component.pop("canaryTrafficPercent", None)
    if percent is not None:
        component["canaryTrafficPercent"] = int(percent)
    if tag_routing is not None:
        annotations = changed["metadata"].setdefault("annotations", {})
        if tag_routing:
            annotations[TAG_ROUTING] = "true"
        else:
            annotations.pop(TAG_ROUTING, None)
    return changed


@dataclass
class Revision:
    """One revision: an immutable predictor template and the model version it pins."""

    name: str
    template: str
    version: str

    def to_dict(self) -> dict:
        return {"name": self.name, "template": self.template, "version": self.version}


@dataclass
class ServiceState:
    """One InferenceService as the KServe controller keeps it: spec, revisions, traffic, status."""

    name: str
    spec: dict | None = None
    revisions: list = field(default_factory=list)
    latest_created: str = ""
    latest_ready: str = ""
    latest_rolled_out: str = ""
    previous_rolled_out: str = ""
    traffic: list = field(default_factory=list)

    # ------------------------------------------------------------------ what the API server and controller do

    def apply(self, spec: dict, version: str) -> Revision | None:
        """Take a new spec; returns the revision it created, if its template is new.

        The new revision is taken as ready: the local plane applies a spec only once the
        revision's predictor answers ready (the KServe target waits for the same).
        """
        created = None
        if not self.revisions or template_of(spec) != self.revisions[-1].template:
            created = Revision(f"{self.name}-predictor-{len(self.revisions) + 1:05d}", template_of(spec), str(version))
            self.revisions.append(created)
            self.latest_created = self.latest_ready = created.name
        self.spec = copy.deepcopy(spec)
        self.reconcile()
        return created

    def reconcile(self) -> None:
        """Traffic from the spec, then status from traffic, until both settle (at most a few passes)."""
        for _ in range(4):
            before = (json.dumps(self.traffic, sort_keys=True), self.latest_rolled_out, self.previous_rolled_out)
            self.traffic = self._traffic_targets()
            self._propagate_status()
            if before == (json.dumps(self.traffic, sort_keys=True), self.latest_rolled_out, self.previous_rolled_out):
                return

    def _traffic_targets(self) -> list:
        percent = canary_percent(self.spec)
        tagged = (self.spec["metadata"].get("annotations") or {}).get(TAG_ROUTING) == "true"
        latest = {"latestRevision": True, "revisionName": self.latest_ready}
        if percent is not None and self.latest_rolled_out:
            targets = [{**latest, "percent": percent, **({"tag": "latest"} if tagged else {})}]
            if percent < 100:
                targets.append({"latestRevision": False, "revisionName": self.latest_rolled_out,
                                "percent": 100 - percent, "tag": "prev"})
            return targets
        return [{**latest, "percent": 100, **({"tag": "latest"} if tagged else {})}]

    def _propagate_status(self) -> None:
        total = {}
        for target in self.traffic:
            total[target["revisionName"]] = total.get(target["revisionName"], 0) + target["percent"]
        for target in self.traffic:
            if target["revisionName"] != self.latest_ready or not target["latestRevision"]:
                continue
            if self.latest_rolled_out != self.latest_ready:
                if target["percent"] == 100:
                    self.previous_rolled_out, self.latest_rolled_out = self.latest_rolled_out, self.latest_ready
            elif (self.latest_ready == self.latest_created and target["percent"] < 100
                  and total.get(target["revisionName"]) == 100 and self.previous_rolled_out):
                self.latest_rolled_out = self.previous_rolled_out

    # ------------------------------------------------------------------ reading it

    def revision(self, name: str) -> Revision:
        return next(r for r in self.revisions if r.name == name)

    def routes(self) -> list:
        """Traffic by revision: ``[{"revision", "version", "percent", "tag"}]`` (tags only where routed)."""
        return [{"revision": t["revisionName"], "version": self.revision(t["revisionName"]).version,
                 "percent": t["percent"], "tag": t.get("tag")} for t in self.traffic]

    def serving(self) -> set:
        """Revisions a route reaches (by percentage or by tag); the others may be stopped."""
        return {t["revisionName"] for t in self.traffic if t["percent"] > 0 or t.get("tag")}

    def status(self) -> dict:
        """The predictor component's status as KServe writes it."""
        return {"latestCreatedRevision": self.latest_created, "latestReadyRevision": self.latest_ready,
                "latestRolledoutRevision": self.latest_rolled_out,
                "previousRolledoutRevision": self.previous_rolled_out,
                "traffic": copy.deepcopy(self.traffic)}

    def to_dict(self) -> dict:
        return {"name": self.name, "spec": self.spec, "revisions": [r.to_dict() for r in self.revisions],
                **self.status()}

    @classmethod
    def from_dict(cls, data: dict) -> "ServiceState":
        return cls(name=data["name"], spec=data["spec"], revisions=[Revision(**r) for r in data["revisions"]],
                   latest_created=data["latestCreatedRevision"], latest_ready=data["latestReadyRevision"],
                   latest_rolled_out=data["latestRolledoutRevision"],
                   previous_rolled_out=data["previousRolledoutRevision"], traffic=data["traffic"])
