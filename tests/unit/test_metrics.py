"""The outcome -> metric mapping and the token check (pure logic)."""

from __future__ import annotations

from taskflow_jobs.email.outcomes import Action, Outcome
from taskflow_jobs.jobs.metrics import REGISTRY, authorized, record_outcomes


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_every_action_has_its_outcome_label_and_types_stay_bounded() -> None:
    provider = "unit-test-provider"
    outcomes = [
        Outcome(1, "welcome_email", 1, Action.SENT, duration_ms=12.0),
        Outcome(2, "welcome_email", 1, Action.RETRIED, duration_ms=30.0),
        Outcome(3, "task_assigned", 5, Action.DEAD_LETTERED),
        Outcome(4, "notification", 1, Action.RELEASED),
        Outcome(7, "notification", 1, Action.SKIPPED, "opted out: ..."),
        Outcome(5, "<script>anything a payload says</script>", 1, Action.DEAD_LETTERED),
        Outcome(6, None, 1, Action.DEAD_LETTERED),
    ]
    record_outcomes(outcomes, provider)
    total = "taskflow_emails_total"
    assert sample(total, type="welcome_email", provider=provider, outcome="sent") == 1
    assert sample(total, type="welcome_email", provider=provider, outcome="retried") == 1
    assert sample(total, type="task_assigned", provider=provider, outcome="dead_lettered") == 1
    assert sample(total, type="notification", provider=provider, outcome="released") == 1
    assert sample(total, type="notification", provider=provider, outcome="skipped") == 1
    assert sample(total, type="other", provider=provider, outcome="dead_lettered") == 2
    assert sample("taskflow_send_seconds_count", provider=provider) == 2
    assert abs(sample("taskflow_send_seconds_sum", provider=provider) - 0.042) < 1e-9


def test_token_check() -> None:
    assert authorized(None, None)
    assert authorized("Bearer x", "")
    assert authorized("Bearer s3cret", "s3cret")
    assert not authorized(None, "s3cret")
    assert not authorized("Bearer s3cre", "s3cret")
    assert not authorized("s3cret", "s3cret")
