"""The clustering settings (REDIS_URL, backplane timers, claim wait), read from a given environ."""

from __future__ import annotations

import pytest

from core.settings import Settings, SettingsError, env_name, load_settings


def test_defaults_are_one_worker_without_a_backplane() -> None:
    s = load_settings({})
    assert s.REDIS_URL == ""
    assert s.BACKPLANE_CHANNEL == "greenroom"
    assert (s.HEARTBEAT_S, s.WORKER_TIMEOUT_S) == (2.0, 10.0)
    assert (s.GAP_WAIT_S, s.CLAIM_WAIT_S) == (0.5, 20.0)
    assert s == Settings()


def test_cluster_settings_are_parsed() -> None:
    """REDIS_URL under its plain name, the rest with the GREENROOM_ prefix; timers as floats."""
    s = load_settings(
        {
            "REDIS_URL": "redis://cache.internal:6380/2",
            "GREENROOM_BACKPLANE_CHANNEL": "gr-prod",
            "GREENROOM_HEARTBEAT_S": "0.25",
            "GREENROOM_WORKER_TIMEOUT_S": "1.5",
            "GREENROOM_GAP_WAIT_S": "0.1",
            "GREENROOM_CLAIM_WAIT_S": "3",
        }
    )
    assert s.REDIS_URL == "redis://cache.internal:6380/2"
    assert s.BACKPLANE_CHANNEL == "gr-prod"
    assert s.HEARTBEAT_S == 0.25 and s.WORKER_TIMEOUT_S == 1.5
    assert s.GAP_WAIT_S == 0.1
    assert s.CLAIM_WAIT_S == 3.0 and isinstance(s.CLAIM_WAIT_S, float)


def test_env_names() -> None:
    assert env_name("REDIS_URL") == "REDIS_URL"
    assert env_name("BACKPLANE_CHANNEL") == "GREENROOM_BACKPLANE_CHANNEL"
    assert env_name("HEARTBEAT_S") == "GREENROOM_HEARTBEAT_S"
    assert env_name("WORKER_TIMEOUT_S") == "GREENROOM_WORKER_TIMEOUT_S"
    assert env_name("GAP_WAIT_S") == "GREENROOM_GAP_WAIT_S"
    assert env_name("CLAIM_WAIT_S") == "GREENROOM_CLAIM_WAIT_S"


def test_prefixed_redis_url_is_not_read() -> None:
    """Only the plain name counts; GREENROOM_REDIS_URL is not a setting."""
    assert load_settings({"GREENROOM_REDIS_URL": "redis://x:6379/0"}).REDIS_URL == ""


def test_the_given_environ_is_used_not_the_process_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://not-redis")
    monkeypatch.setenv("GREENROOM_HEARTBEAT_S", "100")
    s = load_settings({})
    assert s.REDIS_URL == "" and s.HEARTBEAT_S == 2.0


def test_empty_values_mean_unset() -> None:
    s = load_settings(
        {"REDIS_URL": "", "GREENROOM_BACKPLANE_CHANNEL": "", "GREENROOM_GAP_WAIT_S": ""}
    )
    assert s.REDIS_URL == "" and s.BACKPLANE_CHANNEL == "greenroom" and s.GAP_WAIT_S == 0.5


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://user:pw@host:6380/1", "unix:///run/redis.sock"]
)
def test_accepted_redis_urls(url: str) -> None:
    assert load_settings({"REDIS_URL": url}).REDIS_URL == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "127.0.0.1:6379",
        "redis:/127.0.0.1",
        "REDIS://host",
        "postgresql://x",
    ],
)
def test_a_bad_redis_url_scheme_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings({"REDIS_URL": url})


@pytest.mark.parametrize(
    ("heartbeat", "timeout"), [("2", "4"), ("2", "3.9"), ("0.5", "1"), ("1", "0.5")]
)
def test_worker_timeout_must_exceed_twice_the_heartbeat(heartbeat: str, timeout: str) -> None:
    """A timeout of two heartbeats or less would take live workers for dead."""
    with pytest.raises(SettingsError, match="WORKER_TIMEOUT_S"):
        load_settings({"GREENROOM_HEARTBEAT_S": heartbeat, "GREENROOM_WORKER_TIMEOUT_S": timeout})


def test_worker_timeout_just_above_twice_the_heartbeat_is_accepted() -> None:
    s = load_settings({"GREENROOM_HEARTBEAT_S": "2", "GREENROOM_WORKER_TIMEOUT_S": "4.01"})
    assert s.WORKER_TIMEOUT_S == 4.01


def test_overrides_are_checked_too() -> None:
    """A heartbeat raised by an override must still fit under the (default) worker timeout."""
    with pytest.raises(SettingsError, match="WORKER_TIMEOUT_S"):
        load_settings({}, HEARTBEAT_S=5.0)
    assert load_settings({}, HEARTBEAT_S=5.0, WORKER_TIMEOUT_S=11.0).HEARTBEAT_S == 5.0


@pytest.mark.parametrize(
    "name", ["GREENROOM_HEARTBEAT_S", "GREENROOM_GAP_WAIT_S", "GREENROOM_CLAIM_WAIT_S"]
)
@pytest.mark.parametrize("raw", ["0", "-1", "soon"])
def test_timers_must_be_positive_numbers(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: raw})
