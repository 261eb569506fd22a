"""Figures for notebook 04 (fine-tuning on handwritten digits)."""

from __future__ import annotations

__all__: list[str] = []
