"""Assertions on the verdict a self-check prints (shared by the tests/test_checks_NN.py files)."""

from __future__ import annotations

import pytest


def verdict(capsys: pytest.CaptureFixture[str], result: bool) -> tuple[bool, str]:
    """The checker's return value and what it printed."""
    return result, capsys.readouterr().out


def assert_accepted(capsys: pytest.CaptureFixture[str], result: bool) -> None:
    """The checker returned True and printed a pass."""
    ok, out = verdict(capsys, result)
    assert ok is True, out
    assert "✅" in out and "correct" in out


def assert_rejected(capsys: pytest.CaptureFixture[str], result: bool, *hint_words: str) -> str:
    """The checker returned False, printed "not yet" with a hint containing ``hint_words``."""
    ok, out = verdict(capsys, result)
    assert ok is False, out
    assert "❌" in out and "not yet" in out and "Hint:" in out
    for word in hint_words:
        assert word in out, f"{word!r} not in {out!r}"
    return out
