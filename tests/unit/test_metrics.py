"""core.metrics without a server: plain counts reach prometheus_client in bulk, samples only
while metrics run, and the two settings parse."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from core.metrics import MAX_SAMPLES, Tally, bump, flush
from core.settings import SettingsError, load_settings


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_flush_moves_the_counts_into_prometheus_and_starts_them_again() -> None:
    """Counts, labelled counts and samples are added once each, then zeroed; gauges come from probes."""
    tally = Tally()
    tally.enabled = True
    flush([], Tally())  # makes the metrics, so the "before" values below exist
    stored = sample("greenroom_messages_stored_total")
    closes = sample("greenroom_ws_closes_total", code="4008")
    acks = sample("greenroom_send_ack_seconds_count")
    tally.messages_stored = 3
    bump(tally.ws_closes, "4008", 2)
    tally.sample(tally.ack_s, 0.002)
    tally.sample(tally.ack_s, 0.004)
    tally.ws_opened, tally.ws_closed = 5, 2

    flush([lambda: {"rooms_live": 7}], tally)
    assert sample("greenroom_messages_stored_total") == stored + 3
    assert sample("greenroom_ws_closes_total", code="4008") == closes + 2
    assert sample("greenroom_send_ack_seconds_count") == acks + 2
    assert sample("greenroom_ws_connections") == 3
    assert sample("greenroom_rooms_live") == 7
    assert (tally.messages_stored, tally.ws_closes, tally.ack_s) == (0, {}, [])

    flush([], tally)  # nothing new: nothing added twice
    assert sample("greenroom_messages_stored_total") == stored + 3


def test_samples_are_kept_only_while_metrics_run_and_within_a_bound() -> None:
    """With metrics off nothing grows; on, a stalled flusher cannot make the list grow past the bound."""
    tally = Tally()
    tally.sample(tally.commit_s, 0.01)
    assert tally.commit_s == []
    tally.enabled = True
    for _ in range(MAX_SAMPLES + 10):
        tally.sample(tally.commit_s, 0.01)
    assert len(tally.commit_s) == MAX_SAMPLES


def test_metrics_settings_parse() -> None:
    """GREENROOM_METRICS is 1 or 0 (on by default); the token is text."""
    assert load_settings({}).METRICS is True
    assert load_settings({"GREENROOM_METRICS": "0"}).METRICS is False
    assert load_settings({"GREENROOM_METRICS": "off"}).METRICS is False
    assert load_settings({"GREENROOM_METRICS": "1"}).METRICS is True
    assert load_settings({"GREENROOM_METRICS_TOKEN": "t"}).METRICS_TOKEN == "t"
    with pytest.raises(SettingsError, match="GREENROOM_METRICS"):
        load_settings({"GREENROOM_METRICS": "maybe"})
