"""What a failed job's reason says about the failure cap."""

from datetime import timedelta

from userexport import reasons


def test_the_cap_is_said_as_set_even_when_not_whole_minutes():
    last_error = "Microsoft Graph answered 503 serviceNotAvailable"
    assert "for 30 minutes" in reasons.failures_outlasted(last_error, timedelta(minutes=30))
    reason = reasons.failures_outlasted(last_error, timedelta(minutes=0.1))
    assert "for 0.1 minutes (USEREXPORT_FAILURE_CAP_MINUTES)" in reason
    assert reason.startswith("Microsoft Graph answered 503")
