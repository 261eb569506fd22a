"""Figures for notebook 03 (a LoRA layer in PyTorch)."""

from __future__ import annotations

__all__: list[str] = []
