"""The canonical root model: what validate() produces is exactly what read() will report."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodeagent.host.netvalues import TbfParams
from nodeagent.mechanisms.tcmodel import (
    ForeignRoot,
    HtbClass,
    HtbRoot,
    PschedClock,
    TbfRoot,
    dumps,
    htb_class_params,
    htb_quantum,
    loads,
    tbf_canonical,
    tbf_decode,
    tbf_encode,
)

CLOCK = PschedClock()
CLOCKS = st.sampled_from([CLOCK, PschedClock(Fraction(10**6)), PschedClock(Fraction(10**9, 3))])


def test_psched_is_parsed_as_tc_does() -> None:
    clock = PschedClock.parse("000003e8 00000040 000f4240 3b9aca00\n")
    assert clock.ticks_per_second == Fraction(15_625_000)  # one tick = 64 ns
    assert clock.hz == 10**9
    assert PschedClock.parse(None) == CLOCK
    assert PschedClock.parse("garbage") == CLOCK


def test_tbf_encodes_to_the_kernel_units_tc_would_send() -> None:
    params = tbf_encode(TbfRoot(rate=125_000, burst=32_768, latency=50_000), CLOCK)
    assert params == TbfParams(rate=125_000, buffer=4_096_000, limit=6_250 + 32_768)


def test_a_burst_the_kernel_cannot_store_canonicalises_to_what_it_will_report() -> None:
    # 1000 bytes at 1gbit is 128 ticks of 64ns = 1000 bytes exactly; 1001 bytes is not representable.
    rate = 125_000_000
    assert tbf_canonical(TbfRoot(rate, 1000, 1000), CLOCK).burst == 1000
    odd = tbf_canonical(TbfRoot(rate, 1001, 1000), CLOCK)
    assert odd.burst == 1000
    assert tbf_canonical(odd, CLOCK) == odd


@settings(derandomize=True, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=2**32 - 1),
    burst=st.integers(min_value=1, max_value=2**24),
    latency=st.integers(min_value=1, max_value=10**7),
    clock=CLOCKS,
)
def test_tbf_canonical_is_a_projection(rate: int, burst: int, latency: int, clock: PschedClock) -> None:
    once = tbf_canonical(TbfRoot(rate, burst, latency), clock)
    assert tbf_canonical(once, clock) == once  # a second apply writes nothing
    sent = tbf_encode(TbfRoot(rate, burst, latency), clock)
    assert tbf_encode(once, clock) == sent  # the canonical value means the same kernel state
    assert tbf_decode(sent, clock) == once  # and is what read() decodes from that state
    assert once.burst <= burst  # never promises more than asked


def test_htb_class_buffers_follow_tc_defaults() -> None:
    params = htb_class_params(HtbClass(16, 1_250_000, 2_500_000), CLOCK)
    assert (params.minor, params.rate, params.ceil) == (16, 1_250_000, 2_500_000)
    assert params.buffer == 20_000  # 1600 bytes at 10mbit = 1.28 ms = 20000 ticks, as tc computes
    assert params.cbuffer == 10_000
    assert params.quantum == 125_000  # rate / r2q 10, as the kernel would derive it


@pytest.mark.parametrize(("rate", "quantum"), [(1_000, 1_000), (125_000, 12_500), (125_000_000, 200_000)])
def test_htb_quantum_is_the_kernels_clamped_default(rate: int, quantum: int) -> None:
    assert htb_quantum(rate) == quantum


def test_json_is_compact_sorted_and_round_trips() -> None:
    htb = HtbRoot(16, (HtbClass(16, 1_250_000, 2_500_000), HtbClass(32, 125_000, 125_000)))
    text = dumps(htb)
    assert text == (
        '{"classes":[{"ceil":"20mbit","minor":16,"rate":"10mbit"},{"ceil":"1mbit","minor":32,"rate":"1mbit"}],'
        '"default_class":16,"kind":"htb"}'
    )
    assert loads(text) == htb
    tbf = TbfRoot(125_000, 32_768, 50_000)
    assert dumps(tbf) == '{"burst":"32kb","kind":"tbf","latency":"50ms","rate":"1mbit"}'
    assert loads(dumps(tbf)) == tbf
    foreign = ForeignRoot("fq_codel", 0x80010000)
    assert dumps(foreign) == '{"foreign":true,"handle":"8001:","kind":"fq_codel"}'
    assert loads(dumps(foreign)) == foreign
    assert dumps(None) is None and loads(None) is None


@pytest.mark.parametrize("bad", ["[]", '{"kind":"netem"}', '{"kind":"tbf","rate":"x"}', "not json"])
def test_loading_a_value_we_did_not_produce_fails_clearly(bad: str) -> None:
    with pytest.raises(ValueError, match="not a root qdisc value"):
        loads(bad)
