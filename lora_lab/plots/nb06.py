"""Figures for notebook 06 (LoRA in a transformer, and PEFT)."""

from __future__ import annotations

__all__: list[str] = []
