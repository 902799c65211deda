"""Checks the schema cannot express: references between components, cycles, uniqueness.

The reference accepts these documents and then fails somewhere deep in deployment (or
deploys half an application); we reject them up front with the path of the bad field.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import Any

from controller.model.descriptions import App
from controller.model.errors import DescriptionError, Problem, describe_value

_DNS1123 = "a DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending alphanumeric)"


def app_problems(app: App) -> list[Problem]:
    names = [c.name for c in app.components]
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, comp in enumerate(app.components):
        at = f"MLSysOpsApp.components[{i}]"
        problems.extend(_name_problems(comp.name, seen, at))
        seen.add(comp.name)
        if not comp.containers:
            problems.append(Problem(f"{at}.containers", "at least one container", "an empty list"))
        problems.extend(_dependency_problems(comp.name, comp.depends_on, names, at))
        problems.extend(_container_problems(comp.raw, at))
    cycle = _find_cycle(app)
    if cycle:
        i = names.index(cycle[0])
        problems.append(
            Problem(
                f"MLSysOpsApp.components[{i}].depends_on",
                "no dependency cycle",
                " -> ".join([*cycle, cycle[0]]),
            )
        )
    problems.extend(_reference_problems(app, set(names)))
    return problems


def _name_problems(name: str, seen: set[str], at: str) -> Iterator[Problem]:
    if not name:
        yield Problem(f"{at}.metadata.name", "a component name (required field is missing)")
    elif not is_dns1123_label(name):
        yield Problem(f"{at}.metadata.name", _DNS1123.replace("name", "label", 1), describe_value(name))
    elif name in seen:
        yield Problem(f"{at}.metadata.name", "a name unique among the components", describe_value(name))


def _dependency_problems(
    name: str, depends_on: tuple[str, ...], names: list[str], at: str
) -> Iterator[Problem]:
    for j, dep in enumerate(depends_on):
        if dep not in names:
            yield Problem(
                f"{at}.depends_on[{j}]",
                f"the name of a component of this app ({', '.join(names)})",
                describe_value(dep),
            )
        elif dep == name:
            yield Problem(f"{at}.depends_on[{j}]", "another component (not itself)", describe_value(dep))


def _reference_problems(app: App, known: set[str]) -> Iterator[Problem]:
    """single_node groups and component_interactions naming components the app lacks."""
    for g, group in enumerate(app.single_node):
        for j, member in enumerate(group.components):
            if member not in known:
                yield Problem(
                    f"MLSysOpsApp.single_node[{g}].components[{j}]",
                    "the name of a component of this app",
                    describe_value(member),
                )
    for k, inter in enumerate(app.interactions):
        for field, value in (("component_name1", inter.source), ("component_name2", inter.destination)):
            if value and value not in known:
                yield Problem(
                    f"MLSysOpsApp.component_interactions[{k}].{field}",
                    "the name of a component of this app",
                    describe_value(value),
                )


def _container_problems(comp: Mapping[str, Any], at: str) -> list[Problem]:
    problems: list[Problem] = []
    port_names: set[str] = set()
    for j, container in enumerate(comp.get("containers", ())):
        cat = f"{at}.containers[{j}]"
        if not container.get("image"):
            problems.append(Problem(f"{cat}.image", "a container image (required to run the component)"))
        for k, port in enumerate(container.get("ports", ())):
            for field in ("container_port", "host_port"):
                value = port.get(field)
                if value is not None and not 0 < value < 65536:
                    problems.append(
                        Problem(f"{cat}.ports[{k}].{field}", "a port number 1-65535", describe_value(value))
                    )
            name = port.get("name")
            if name is not None and name in port_names:
                problems.append(
                    Problem(
                        f"{cat}.ports[{k}].name",
                        "a port name unique within the component",
                        describe_value(name),
                    )
                )
            if name is not None:
                port_names.add(name)
            if comp.get("host_network") and port.get("host_port") not in (None, port.get("container_port")):
                problems.append(
                    Problem(
                        f"{cat}.ports[{k}].host_port",
                        "the same value as container_port (host_network is set)",
                        describe_value(port.get("host_port")),
                    )
                )
    return problems


def resource_problems(app: App) -> list[Problem]:
    """Limits below requests: the kubelet would refuse the pod long after we placed it."""
    problems = []
    for i, comp in enumerate(app.components):
        for j, c in enumerate(comp.containers):
            r = c.resources
            base = f"MLSysOpsApp.components[{i}].containers[{j}].platform_requirements"
            if r.cpu_limit_millis is not None and r.cpu_limit_millis < r.cpu_millis:
                problems.append(
                    Problem(
                        f"{base}.cpu.limits",
                        "a limit at least the request",
                        f"{r.cpu_limit_millis}m < {r.cpu_millis}m",
                    )
                )
            if r.memory_limit_bytes is not None and r.memory_limit_bytes < r.memory_bytes:
                problems.append(
                    Problem(
                        f"{base}.memory.limits",
                        "a limit at least the request",
                        f"{r.memory_limit_bytes} < {r.memory_bytes} bytes",
                    )
                )
    return problems


def _dependencies(app: App) -> dict[str, list[str]]:
    known = {c.name for c in app.components}
    return {c.name: [d for d in c.depends_on if d != c.name and d in known] for c in app.components}


def _find_cycle(app: App) -> list[str]:
    """One dependency cycle (as the list of its components), or [] (iterative: apps can be long chains)."""
    deps = _dependencies(app)
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for root in deps:
        if root in state:
            continue
        path: list[str] = [root]
        todo: list[Iterator[str]] = [iter(deps[root])]
        state[root] = 1
        while todo:
            dep = next(todo[-1], None)
            if dep is None:
                state[path.pop()] = 2
                todo.pop()
            elif state.get(dep) == 1:
                return path[path.index(dep) :]
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                todo.append(iter(deps[dep]))
    return []


def depends_on_order(app: App) -> tuple[str, ...]:
    """Components so that each comes after everything it depends on; among components ready at
    the same time, document order (Kahn's algorithm, linear in components + dependencies)."""
    deps = _dependencies(app)
    waiting = {name: len(set(d)) for name, d in deps.items()}
    dependents: dict[str, list[str]] = {}
    for name, ds in deps.items():
        for d in set(ds):
            dependents.setdefault(d, []).append(name)
    position = {c.name: i for i, c in enumerate(app.components)}
    ready = [position[n] for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = app.components[heapq.heappop(ready)].name
        order.append(name)
        for after in dependents.get(name, ()):
            waiting[after] -= 1
            if waiting[after] == 0:
                heapq.heappush(ready, position[after])
    if len(order) != len(deps):
        stuck = sorted(n for n, count in waiting.items() if count > 0)
        raise DescriptionError.single("MLSysOpsApp.components", "no dependency cycle", " -> ".join(stuck))
    return tuple(order)


def is_dns1123_label(name: str) -> bool:
    return _is_dns(name, 63, allow_dots=False)


def is_dns1123_subdomain(name: str) -> bool:
    return _is_dns(name, 253, allow_dots=True)


_DNS_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_DNS_SUBDOMAIN_CHARS = _DNS_LABEL_CHARS | {"."}


def _is_dns(name: str, limit: int, allow_dots: bool) -> bool:
    if not name or len(name) > limit or not (name[0].isalnum() and name[-1].isalnum()):
        return False
    return set(name) <= (_DNS_SUBDOMAIN_CHARS if allow_dots else _DNS_LABEL_CHARS)
