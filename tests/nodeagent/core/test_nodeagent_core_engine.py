"""The apply engine, specified against in-memory mechanisms (no host I/O)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nodeagent.errors import HostError, InvalidSpec, Unsupported
from nodeagent.mechanisms.base import Write
from nodeagent.service.events import EventBus, EventKind
from nodeagent.service.store import CorruptState

Fake = Any  # the FakeMechanism class (conftest fixture `fake`)
MakeEngine = Any  # conftest fixture `make_engine`


def profile(**sections: dict[str, str | None]) -> dict[str, dict[str, dict[str, str | None]]]:
    return {name: {"values": values} for name, values in sections.items()}


# ---------------------------------------------------------------- apply


def test_the_diff_of_an_apply_reads_with_its_plan_s_snapshot_and_no_other_read_does(
    fake: Fake, make_engine: MakeEngine
) -> None:
    cg = fake("cgroups", {"a/weight": "100"})
    engine = make_engine(cg)
    engine.apply(profile(cgroups={"a/weight": "50"}))
    engine.check_drift()
    engine.state()
    engine.reset()
    assert cg.snapshots == [("planned", "cgroups", 0), None, None, None]


def test_apply_writes_only_what_differs_in_mechanism_order(fake: Fake, make_engine: MakeEngine) -> None:
    cpu = fake("cpufreq", {"gov": "performance", "max": "2000"})
    cg = fake("cgroups", {"a/weight": "100"})
    engine = make_engine(cpu, cg)

    result = engine.apply(profile(cgroups={"a/weight": "50"}, cpufreq={"gov": "powersave", "max": "2000"}))

    assert result.writes == (
        Write("cpufreq", "gov", "performance", "powersave"),
        Write("cgroups", "a/weight", "100", "50"),
    )
    assert result.writes_performed == 2
    assert cpu.knobs == {"gov": "powersave", "max": "2000"}
    assert cg.knobs == {"a/weight": "50"}


def test_writes_of_one_mechanism_go_through_its_order(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups")
    engine = make_engine(cg)
    result = engine.apply(profile(cgroups={"z": "1", "a": "3", "m": "2"}))
    assert [w.key for w in result.writes] == ["z", "m", "a"]  # FakeMechanism orders by value
    assert [w.key for w in cg.log] == ["z", "m", "a"]


def test_second_identical_apply_writes_nothing_and_keeps_the_generation(
    fake: Fake, make_engine: MakeEngine
) -> None:
    cg = fake("cgroups", {"k": "1"})
    engine = make_engine(cg)
    first = engine.apply(profile(cgroups={"k": "2"}))
    again = engine.apply(profile(cgroups={"k": "2"}))
    assert (first.writes_performed, first.generation) == (1, 1)
    assert (again.writes_performed, again.writes, again.generation) == (0, (), 1)


def test_dry_run_returns_the_planned_writes_and_changes_nothing(
    runtime: Path, fake: Fake, make_engine: MakeEngine
) -> None:
    cg = fake("cgroups", {"k": "1"})
    engine = make_engine(cg)
    planned = engine.apply(profile(cgroups={"k": "2", "new": "x"}), dry_run=True)
    assert planned.writes == (Write("cgroups", "k", "1", "2"), Write("cgroups", "new", None, "x"))
    assert planned.writes_performed == 0 and planned.generation == 0
    assert cg.knobs == {"k": "1"} and cg.log == []
    assert not (runtime / "journal.json").exists()
    # The real apply then performs exactly what the dry run announced.
    assert engine.apply(profile(cgroups={"k": "2", "new": "x"})).writes == planned.writes


def test_invalid_section_anywhere_means_no_write_at_all(
    runtime: Path, fake: Fake, make_engine: MakeEngine
) -> None:
    cpu, cg = fake("cpufreq", {"gov": "a"}), fake("cgroups", {"k": "1"})
    engine = make_engine(cpu, cg)
    with pytest.raises(InvalidSpec) as err:
        engine.apply(profile(cpufreq={"gov": "b"}, cgroups={"k": "bad"}))
    assert err.value.field == "cgroups.values.k"
    assert cpu.log == [] and cg.log == []
    assert not runtime.exists() or sorted(p.name for p in runtime.iterdir()) == []


@pytest.mark.parametrize(
    ("bad_profile", "field"),
    [
        ({"gpu": {}}, "gpu"),
        ({"extensions": {"nope": {}}}, "extensions.nope"),
        ({"extensions": {"cgroups": {}}}, "extensions.cgroups"),
        ({"extensions": []}, "extensions"),
        ({"cgroups": "all"}, "cgroups"),
    ],
)
def test_unknown_or_malformed_sections_are_invalid_and_named(
    fake: Fake, make_engine: MakeEngine, bad_profile: dict, field: str
) -> None:
    engine = make_engine(fake("cgroups"))
    with pytest.raises(InvalidSpec) as err:
        engine.apply(bad_profile)
    assert err.value.field == field


def test_section_of_an_unavailable_mechanism_is_a_failed_precondition(
    fake: Fake, make_engine: MakeEngine
) -> None:
    engine = make_engine(fake("cpufreq", available=False), fake("cgroups"))
    with pytest.raises(Unsupported, match=r"cpufreq.*no such hardware"):
        engine.apply(profile(cpufreq={"gov": "x"}))


def test_extension_sections_reach_their_plugin(fake: Fake, make_engine: MakeEngine) -> None:
    files = fake("files")
    engine = make_engine(files)
    engine.apply({"extensions": {"files": {"values": {"a": "1"}}}})
    assert files.knobs == {"a": "1"}
    with pytest.raises(InvalidSpec) as err:
        engine.apply({"extensions": {"files": {"values": {"a": 1}}}})
    assert err.value.field == "extensions.files.values.a"


# ---------------------------------------------------------------- failure and undo


def test_failed_write_undoes_this_applys_writes_newest_first(fake: Fake, make_engine: MakeEngine) -> None:
    cpu = fake("cpufreq", {"gov": "a"})
    cg = fake("cgroups", {"x": "1", "y": "1", "z": "1"})
    cg.fail_on = {"z"}
    bus = EventBus()
    errors = bus.subscribe([EventKind.ERROR])
    engine = make_engine(cpu, cg, bus=bus)

    with pytest.raises(HostError):
        engine.apply(profile(cpufreq={"gov": "b"}, cgroups={"x": "2", "y": "3", "z": "4"}))

    assert cpu.knobs == {"gov": "a"} and cg.knobs == {"x": "1", "y": "1", "z": "1"}
    # cgroups wrote x then y; undo runs y then x (newest first; order() keeps that since both go back to "1").
    assert cg.log[2:] == [Write("cgroups", "y", "3", "1"), Write("cgroups", "x", "2", "1")]
    assert cpu.log == [Write("cpufreq", "gov", "a", "b"), Write("cpufreq", "gov", "b", "a")]
    assert engine.generation == 0 and engine.state().profile == {}
    event = errors.get(timeout=0)
    assert event is not None and "apply failed" in event.message


def test_undo_goes_through_the_mechanisms_order(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"a": "5", "b": "6", "c": "0"})
    cg.fail_on = {"c"}
    engine = make_engine(cg)
    with pytest.raises(HostError):
        engine.apply(profile(cgroups={"a": "1", "b": "2", "c": "9"}))
    # Undo inverses are b:2→6 then a:1→5; FakeMechanism.order sorts by value: a (5) before b (6).
    assert [(w.key, w.after) for w in cg.log[2:]] == [("a", "5"), ("b", "6")]


def test_a_plugin_bug_in_write_is_undone_like_a_host_error(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"a": "1"})
    engine = make_engine(cg)
    original_write = cg.write

    def buggy(write: Write) -> None:
        if write.key == "b":
            raise KeyError("oops")
        original_write(write)

    cg.write = buggy  # type: ignore[method-assign]
    with pytest.raises(HostError, match="cgroups:b: KeyError"):
        engine.apply(profile(cgroups={"a": "2", "b": "3"}))
    assert cg.knobs == {"a": "1"}


# ---------------------------------------------------------------- journal


def test_originals_are_journaled_before_the_first_write(
    runtime: Path, fake: Fake, make_engine: MakeEngine
) -> None:
    cg = fake("cgroups", {"k": "orig"})
    engine = make_engine(cg)
    seen: list[object] = []
    original_write = cg.write

    def spying(write: Write) -> None:
        seen.append(json.loads((runtime / "journal.json").read_text())["originals"])
        original_write(write)

    cg.write = spying  # type: ignore[method-assign]
    engine.apply(profile(cgroups={"k": "new", "n": "x"}))
    assert seen[0] == [
        {"mechanism": "cgroups", "key": "k", "original": "orig"},
        {"mechanism": "cgroups", "key": "n", "original": None},
    ]


def test_a_restarted_engine_resets_to_the_first_originals(
    runtime: Path, fake: Fake, make_engine: MakeEngine
) -> None:
    cg = fake("cgroups", {"k": "orig"})
    engine = make_engine(cg)
    engine.apply(profile(cgroups={"k": "one", "n": "x"}))
    engine.apply(profile(cgroups={"k": "two", "n": "x"}))  # must not overwrite the original "orig"

    restarted = make_engine(cg)  # as after kill -9: same runtime dir, same host
    assert restarted.generation == 2
    result = restarted.reset()
    assert cg.knobs == {"k": "orig"}
    assert result.writes_performed == 2
    assert not (runtime / "journal.json").exists()
    assert restarted.reset().writes == ()  # idempotent


def test_reset_dry_run_lists_restores_without_writing(
    runtime: Path, fake: Fake, make_engine: MakeEngine
) -> None:
    cg = fake("cgroups", {"k": "orig"})
    engine = make_engine(cg)
    engine.apply(profile(cgroups={"k": "new"}))
    planned = engine.reset(dry_run=True)
    assert planned.writes == (Write("cgroups", "k", "new", "orig"),) and planned.writes_performed == 0
    assert cg.knobs == {"k": "new"} and (runtime / "journal.json").exists()


def test_reset_restores_mechanisms_in_reverse_apply_order_and_forgets_the_profile(
    fake: Fake, make_engine: MakeEngine
) -> None:
    cpu, cg = fake("cpufreq", {"g": "a"}), fake("cgroups", {"k": "1"})
    bus = EventBus()
    resets = bus.subscribe([EventKind.RESET])
    engine = make_engine(cpu, cg, bus=bus)
    engine.apply(profile(cpufreq={"g": "b"}, cgroups={"k": "2"}))
    result = engine.reset()
    assert [w.mechanism for w in result.writes] == ["cgroups", "cpufreq"]
    assert engine.state().profile == {} and engine.state().knobs == ()
    assert engine.generation == 1  # generations never go back
    assert resets.get(timeout=0) is not None


def test_failed_restore_keeps_that_original_for_a_later_reset(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"a": "1", "b": "1"})
    engine = make_engine(cg)
    engine.apply(profile(cgroups={"a": "2", "b": "2"}))
    cg.fail_on = {"b"}
    with pytest.raises(HostError, match="cgroups:b"):
        engine.reset()
    assert cg.knobs == {"a": "1", "b": "2"}
    cg.fail_on = set()
    engine.reset()
    assert cg.knobs == {"a": "1", "b": "1"}


def test_a_mechanism_that_cannot_read_does_not_block_the_others_reset(
    fake: Fake, make_engine: MakeEngine
) -> None:
    cpu, cg = fake("cpufreq", {"g": "a"}), fake("cgroups", {"k": "1"})
    engine = make_engine(cpu, cg)
    engine.apply(profile(cpufreq={"g": "b"}, cgroups={"k": "2"}))
    cg.unreadable = True
    assert [v.key for v in engine.state().knobs] == ["g", "k"]  # state still answers
    with pytest.raises(HostError, match=r"cgroups:\* \(knobs: cannot read\)"):
        engine.reset()
    assert cpu.knobs == {"g": "a"} and cg.knobs == {"k": "2"}
    cg.unreadable = False
    engine.reset()  # the journal kept cgroups' originals
    assert cg.knobs == {"k": "1"}


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": "something-else"}',
        '{"format": "mlsysops-nodeagent-journal/1", "originals": [1]}',
    ],
)
def test_a_corrupt_journal_refuses_to_start_with_a_clear_message(
    runtime: Path, fake: Fake, make_engine: MakeEngine, content: str
) -> None:
    runtime.mkdir()
    (runtime / "journal.json").write_text(content)
    with pytest.raises(CorruptState, match=r"journal\.json.*refusing to start"):
        make_engine(fake("cgroups"))
    assert (runtime / "journal.json").read_text() == content  # never dropped


def test_a_corrupt_desired_state_refuses_to_start(runtime: Path, fake: Fake, make_engine: MakeEngine) -> None:
    make_engine(fake("cgroups", {"k": "1"})).apply(profile(cgroups={"k": "2"}))
    slot = runtime / "desired.json.0"
    slot.write_bytes(slot.read_bytes().replace(b"mlsysops", b"xxxxxxxx"))  # fails its CRC
    with pytest.raises(CorruptState, match=r"no valid slot among desired\.json\.0"):
        make_engine(fake("cgroups"))


# ---------------------------------------------------------------- applies add up; generation


def test_applies_add_up_until_a_reset(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"a": "1", "b": "1"})
    engine = make_engine(cg)
    engine.apply(profile(cgroups={"a": "2", "b": "2"}))
    assert engine.apply(profile(cgroups={"a": "3"})).writes == (Write("cgroups", "a", "2", "3"),)
    assert cg.knobs == {"a": "3", "b": "2"}  # b keeps the earlier profile's value ...
    cg.knobs["b"] = "9"
    assert [w.key for w in engine.check_drift().drifted] == ["b"]  # ... is still watched for drift ...
    engine.reset()
    assert cg.knobs == {"a": "1", "b": "1"}  # ... until the originals come back


def test_writes_order_adds_are_journaled_and_restored_too(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"parent/cpus": "0-3"})
    original_order = cg.order

    def with_companion(writes: Sequence[Write]) -> list[Write]:  # like a v1 cpuset copied into a new group
        created = [w for w in writes if w.key == "g" and w.after is not None]
        extra = [Write("cgroups", "g/cpus", cg.knobs.get("g/cpus"), "0-3") for _ in created]
        return original_order([*writes, *extra])

    cg.order = with_companion  # type: ignore[method-assign]
    engine = make_engine(cg)
    assert engine.apply(profile(cgroups={"g": "present"})).writes_performed == 2
    assert engine.apply(profile(cgroups={"g": "present"})).writes_performed == 0
    engine.reset()
    assert cg.knobs == {"parent/cpus": "0-3"}


def test_generation_counts_profile_changes_and_survives_restart(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"a": "1"})
    engine = make_engine(cg)
    assert [engine.apply(profile(cgroups={"a": v})).generation for v in ("2", "2", "3", "3")] == [1, 1, 2, 2]
    restarted = make_engine(cg)
    assert restarted.generation == 2
    assert restarted.state().profile == profile(cgroups={"a": "3"})


def test_state_shows_desired_actual_original_and_drift(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"a": "1", "b": "7"})
    engine = make_engine(cg)
    engine.apply(profile(cgroups={"a": "2", "b": "7"}))
    cg.knobs["a"] = "9"  # changed behind the agent's back
    state = engine.state()
    views = {v.key: v for v in state.knobs}
    a = views["a"]
    assert (a.desired, a.actual, a.original, a.drifted) == ("2", "9", "1", True)
    assert views["b"].has_original is False and views["b"].drifted is False  # never written: no original
    assert state.drifted == 1 and state.generation == 1 and state.last_apply is not None


# ---------------------------------------------------------------- drift


def test_drift_is_reported_once_per_knob_and_not_corrected_by_default(
    fake: Fake, make_engine: MakeEngine
) -> None:
    cg = fake("cgroups", {"a": "1"})
    bus = EventBus()
    drift = bus.subscribe([EventKind.DRIFT])
    engine = make_engine(cg, bus=bus)
    engine.apply(profile(cgroups={"a": "2"}))
    assert engine.check_drift().drifted == ()

    cg.knobs["a"] = "5"
    report = engine.check_drift()
    assert report.drifted == (Write("cgroups", "a", "5", "2"),) and not report.enforced
    engine.check_drift()
    event = drift.get(timeout=0)
    assert event is not None and (event.mechanism, event.key) == ("cgroups", "a")
    assert drift.get(timeout=0) is None  # the second check saw the same drift: no new event
    assert cg.knobs["a"] == "5"


def test_enforced_drift_is_written_back_and_announced(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"a": "1"})
    bus = EventBus()
    enforced = bus.subscribe([EventKind.ENFORCED])
    engine = make_engine(cg, bus=bus)
    engine.apply(profile(cgroups={"a": "2"}))
    cg.knobs["a"] = "5"
    report = engine.check_drift(enforce=True)
    assert report.enforced and cg.knobs["a"] == "2"
    event = enforced.get(timeout=0)
    assert event is not None and event.key == "a"
    assert engine.check_drift().drifted == ()
    engine.reset()
    assert cg.knobs["a"] == "1"  # the original from before the first apply, not the drifted value


class RecordingMetrics:
    def __init__(self) -> None:
        self.applies: list[tuple[int, bool, str]] = []
        self.drift: dict[str, int] = {}
        self.drift_events: list[str] = []
        self.errors: list[str] = []

    def observe_apply(self, seconds: float, writes: int, *, dry_run: bool, outcome: str) -> None:
        assert seconds >= 0
        self.applies.append((writes, dry_run, outcome))

    def set_drift(self, mechanism: str, drifted_knobs: int) -> None:
        self.drift[mechanism] = drifted_knobs

    def count_drift_event(self, mechanism: str) -> None:
        self.drift_events.append(mechanism)

    def count_error(self, kind: str) -> None:
        self.errors.append(kind)


def test_metrics_see_every_outcome(fake: Fake, make_engine: MakeEngine) -> None:
    cg = fake("cgroups", {"a": "1"})
    metrics = RecordingMetrics()
    engine = make_engine(cg, metrics=metrics)
    engine.apply(profile(cgroups={"a": "2"}), dry_run=True)
    engine.apply(profile(cgroups={"a": "2"}))
    with pytest.raises(InvalidSpec):
        engine.apply(profile(cgroups={"a": "bad"}))
    cg.fail_on = {"b"}
    with pytest.raises(HostError):
        engine.apply(profile(cgroups={"a": "2", "b": "1"}))
    assert metrics.applies == [(0, True, "ok"), (1, False, "ok"), (0, False, "invalid"), (0, False, "failed")]
    assert metrics.errors == ["apply"]
    cg.knobs["a"] = "7"
    engine.check_drift()
    assert metrics.drift == {"cgroups": 1} and metrics.drift_events == ["cgroups"]


def test_the_engine_reports_itself_responsive_when_idle(fake: Fake, make_engine: MakeEngine) -> None:
    assert make_engine(fake("cgroups")).responsive(0.1)


def test_the_committed_profile_is_a_copy_the_caller_cannot_change(
    fake: Fake, make_engine: MakeEngine
) -> None:
    cg = fake("cgroups", {"k": "1"})
    engine = make_engine(cg)
    sent: dict[str, Any] = {"cgroups": {"values": {"k": "2"}, "notes": ["a", {"b": None}]}}
    engine.apply(sent)
    sent["cgroups"]["values"]["k"] = "3"
    sent["cgroups"]["notes"][1]["b"] = "changed"
    assert engine.desired_profile() == {"cgroups": {"values": {"k": "2"}, "notes": ["a", {"b": None}]}}
