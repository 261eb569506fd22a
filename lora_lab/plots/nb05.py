"""Figures for notebook 05 (what LoRA learns)."""

from __future__ import annotations

__all__: list[str] = []
