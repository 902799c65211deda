"""An explicit registry of policy factories (no module-level state).

`PolicyRegistry.from_entry_points()` reads the `mlsysops.controller.policies` group; tests and
embedders build their own with `PolicyRegistry({...})` or `.register(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint

from controller.plugins import Registry, UnknownPlugin
from controller.policies.base import Policy

ENTRY_POINT_GROUP = "mlsysops.controller.policies"
DEFAULT_CHAIN = ("staticPlacedComponents", "constraintAwarePlacer")


class UnknownPolicy(UnknownPlugin):
    kind = "policy"


class PolicyRegistry(Registry[Callable[[], Policy]]):
    group = ENTRY_POINT_GROUP
    unknown = UnknownPolicy

    @classmethod
    def from_entry_point(cls, ep: EntryPoint) -> Callable[[], Policy]:
        def build() -> Policy:
            policy_class: Callable[[], Policy] = ep.load()
            return policy_class()

        return build

    def create(self, name: str) -> Policy:
        return self.factory(name)()

    def chain(self, names: Sequence[str] = DEFAULT_CHAIN) -> list[Policy]:
        return [self.create(n) for n in names]
