"""The web face's login sessions and failed-login rate limit (console/web/sessions.py), on a
clock the test moves."""

from __future__ import annotations

from console.web.sessions import LoginThrottle, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_session_lives_while_used_and_ends_idle_or_old() -> None:
    clock = Clock()
    sessions = Sessions(idle=60, lifetime=300, clock=clock)
    token, session = sessions.create("admin", "10.0.0.9")
    assert len(token) >= 40 and token not in session.key  # only a hash is kept
    other, _ = sessions.create("admin", "10.0.0.9")
    assert other != token
    for _ in range(4):  # used every 50 s: alive, though 200 s passed
        clock.now += 50
        assert sessions.get(token) is session
    clock.now += 61  # idle past 60 s
    assert sessions.get(token) is None
    assert sessions.get(token) is None  # gone, not revived
    fresh, _ = sessions.create("admin", None)
    for _ in range(6):  # used every 50 s, but 300 s after login it ends
        clock.now += 50
        found = sessions.get(fresh)
    assert found is None


def test_unknown_tokens_and_logout() -> None:
    sessions = Sessions(clock=Clock())
    token, session = sessions.create("operator", None)
    assert sessions.get(None) is None and sessions.get("") is None
    assert sessions.get(token + "x") is None
    sessions.end(token)
    assert sessions.get(token) is None and not sessions.alive(session)


def test_sweep_drops_expired_sessions() -> None:
    clock = Clock()
    sessions = Sessions(idle=10, lifetime=100, clock=clock)
    sessions.create("a", None)
    clock.now += 5
    kept, _ = sessions.create("b", None)
    clock.now += 6
    sessions.sweep()
    assert len(sessions) == 1 and sessions.get(kept) is not None


def test_throttle_per_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window=60, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1")
        clock.now += 1
    assert throttle.wait_for("10.0.0.1") == 0
    throttle.failed("10.0.0.1")
    assert throttle.wait_for("10.0.0.1") == 58  # until the first failure leaves the window
    assert throttle.wait_for("10.0.0.2") == 0  # another address is not held up
    clock.now += 58
    assert throttle.wait_for("10.0.0.1") == 0
    throttle.failed("10.0.0.1")  # two still in the window, and this one: held again
    assert throttle.wait_for("10.0.0.1") > 0
    throttle.succeeded("10.0.0.1")
    assert throttle.wait_for("10.0.0.1") == 0
