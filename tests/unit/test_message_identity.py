"""Each email carries a stable identity of its job: a re-send (at-least-once delivery)
has the same Message-ID, so it can be recognised downstream."""

from __future__ import annotations

from taskflow_jobs.email.compose import MESSAGE_ID_HEADER, OutgoingEmail, parse_sender


def outgoing(message_id: int) -> OutgoingEmail:
    sender = parse_sender("TaskFlow <noreply@example.com>")
    return OutgoingEmail(
        message_id=message_id,
        message_type="welcome_email",
        sender=sender,
        recipient=parse_sender("Ann <ann@example.com>"),
        subject="Welcome",
        text="Hi",
        html="<p>Hi</p>",
    )


def test_the_message_id_is_derived_from_the_job_and_the_same_on_every_send() -> None:
    first, again = outgoing(42).mime(), outgoing(42).mime()
    assert first["Message-ID"] == again["Message-ID"] == "<taskflow.email.42@example.com>"
    assert outgoing(43).mime()["Message-ID"] != first["Message-ID"]
    assert first[MESSAGE_ID_HEADER] == "42"
