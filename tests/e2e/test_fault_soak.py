"""The fault soak, small and deterministic (`bench/faults.py --small`; `make bench` runs
the full one): real PostgreSQL restarted with pg_ctl, a real Prefect server stopped and
started again, two `consume` processes SIGKILLed and restarted, the SendGrid stand-in
answering 500, 429 and hangs from a seeded draw. Nothing is lost, nothing stays queued,
and every email sent twice is explained by a kill just after the provider accepted it."""

from __future__ import annotations

from pathlib import Path

from bench.faults import SMALL, soak


def test_small_fault_soak_loses_nothing_and_explains_every_duplicate(tmp_path: Path) -> None:
    report = soak(SMALL, tmp_path / "soak")
    print(report)
    faults = report["faults"]
    # the faults happened: otherwise the figures below prove nothing
    assert faults["kill"]["count"] >= 3
    assert faults["pg-restart"]["count"] == SMALL.pg_restarts == 1
    assert faults["prefect-stop"]["count"] == 1
    answers = report["provider_answers"]
    assert answers.get("500", 0) > 0 and answers.get("429", 0) > 0, answers
    assert report["insert_retries"] > 0, "signups were being written when PostgreSQL restarted"
    assert report["prefect"]["switched_to_without_prefect"] >= 1, report["prefect"]

    assert report["signups"] >= SMALL.signups
    assert report["lost"] == 0, report["lost_ids"]
    assert report["still_queued"] == 0
    assert report["dead_lettered"] == 0, "10 attempts outlast a 16 % fault rate"
    assert report["delivered"] == report["signups"]
    assert report["duplicates_unexplained"] == 0, report["unexplained_ids"]
    explained = report["duplicates_explained"]
    assert explained.get("kill", 0) <= faults["kill"]["count"], "about one per kill at most"
    # the settle is retried while the lease lasts: a restart with no kill re-sends nothing
    # (a kill while PostgreSQL is down re-sends what it could not ack: "pg-restart+kill")
    assert explained.get("pg-restart", 0) == 0, report["duplicates_explained"]
