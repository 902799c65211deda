"""One mechanism registry for plan mode and the daemon: a plugin registered only there (no entry
point, nothing hard-coded) renders in plan mode and realizes in the reconcile loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from ctlkube_harness import APP, FIXTURES, Running, registry

from controller.kube.api import KubeApi
from controller.mechanisms import MechanismContext, MechanismRegistry, RealizeResult, UnknownMechanism
from controller.model import App
from controller.plan import plan_files
from controller.policies import Plan
from mlsysops.testing import wait_for


class Notes:
    """A third-party mechanism: one note per placed component; remembers what it realized and
    whether the daemon gave it the API server."""

    name = "notes"

    def __init__(self, context: MechanismContext) -> None:
        self.has_api = context.api is not None
        self.realized: list[str] = []

    @classmethod
    def from_context(cls, context: MechanismContext) -> Notes:
        built = cls(context)
        BUILT.append(built)
        return built

    def render(self, app: App, plan: Plan) -> Sequence[Mapping[str, object]]:
        return [{"kind": "Note", "component": d.component, "node": d.node} for d in plan.decisions]

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        self.realized.append(app.name)
        return RealizeResult(self.name, tuple(f"Note/{d.component}" for d in plan.decisions), ())

    def remove(self, app_name: str, namespace: str) -> None:
        pass


BUILT: list[Notes] = []


@pytest.fixture
def notes_only() -> MechanismRegistry:
    BUILT.clear()
    return MechanismRegistry({"notes": Notes.from_context})


def test_plan_mode_renders_a_registered_mechanism(notes_only: MechanismRegistry) -> None:
    report = plan_files([FIXTURES / "app.yaml"], FIXTURES / "inventory", registry=registry(),
                        mechanisms=notes_only)
    (result,) = report.results
    assert list(result.objects) == ["notes"] and result.unavailable == ()
    assert {o["component"] for o in result.objects["notes"]} == {c.name for c in result.app.components}
    assert [b.has_api for b in BUILT] == [False]  # plan mode: built without adapters


def test_the_daemon_realizes_with_the_same_registered_mechanism(kube: KubeApi, world, app_doc,
                                                                controllers: Running,
                                                                notes_only: MechanismRegistry) -> None:
    kube.apply(app_doc, field_manager="test-user")
    controllers.start(mechanisms=("notes",), mechanism_registry=notes_only)
    wait_for(lambda: BUILT and APP in BUILT[0].realized, what="the notes mechanism realizing the app")
    assert [b.has_api for b in BUILT] == [True]  # the daemon: built with the API server


def test_the_daemon_refuses_a_mechanism_the_registry_lacks(notes_only: MechanismRegistry) -> None:
    with pytest.raises(UnknownMechanism, match="unknown mechanism 'kubernetes': expected one of notes"):
        notes_only.build(["kubernetes"], MechanismContext())


def test_the_installed_registry_holds_the_shipped_mechanisms() -> None:
    assert {"kubernetes", "karmada", "nodeagent"} <= set(MechanismRegistry.from_entry_points().names())
