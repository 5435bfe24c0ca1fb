"""The fault soak's analysis (pure logic): what counts as lost, and which duplicates a
fault explains."""

from __future__ import annotations

from bench._soak_report import Fault, analyse, explain_duplicate

KILL = Fault("kill", 100.0, 100.01)
RESTART = Fault("pg-restart", 200.0, 201.0)


def test_a_duplicate_is_explained_only_by_a_fault_right_after_its_first_accept() -> None:
    assert explain_duplicate(99.5, [KILL], bound=1.0) == "kill"
    assert explain_duplicate(100.05, [KILL], bound=1.0) == "kill", "in flight at the kill"
    assert explain_duplicate(98.0, [KILL], bound=1.0) is None, "acked long before the kill"
    assert explain_duplicate(100.5, [KILL], bound=1.0) is None, "accepted after the kill"
    assert explain_duplicate(200.5, [RESTART], bound=1.0) == "pg-restart"
    assert explain_duplicate(150.0, [KILL, RESTART], bound=1.0) is None
    during = Fault("kill", RESTART.begin + 0.3, RESTART.begin + 0.32)
    assert explain_duplicate(RESTART.begin + 0.1, [during, RESTART], bound=1.0) == (
        "pg-restart+kill"
    ), "accepted while PostgreSQL was down, killed before the ack could commit"


def test_lost_excludes_dead_letters_and_duplicates_count_extra_copies() -> None:
    enqueued = {1: 10.0, 2: 11.0, 3: 12.0, 4: 13.0}
    accepted = {1: [10.1], 2: [99.8, 108.0, 109.0]}
    report = analyse(
        enqueued, accepted, dead_lettered={3}, still_queued=set(), faults=[KILL],
        outage=(11.5, 12.5), settle_bound=1.0,
    )  # fmt: skip
    assert report["lost"] == 1 and report["lost_ids"] == [4]
    assert report["dead_lettered"] == 1
    assert report["duplicates"] == 1 and report["extra_copies"] == 2
    assert report["duplicates_explained"] == {"kill": 1}
    assert report["latency"]["before"]["n"] == 2 and report["latency"]["during"]["n"] == 0
