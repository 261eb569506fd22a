"""Freeze two texts from the running Python's standard library into ``data/texts/``.

    python tools/build_texts.py

Notebook 06 trains two different adapters on one base model; these are their two tasks. The
standard library differs between Python versions, so the texts are committed, and this script
records which Python made them (the shipped ones: see data/README.md).

- ``python_code.txt``: the source of the pure-Python modules in ``MODULES``, in that order, each
  preceded by a comment line ``# ---- Lib/<path> ----`` and followed by a blank line.
- ``python_docs.txt``: the Python language reference as plain text, from
  ``pydoc_data.topics.topics`` (the text ``help("assert")`` and friends print). Topics in the
  dict's order; typographic punctuation becomes ASCII by ``PUNCTUATION``; a topic that still
  holds a character outside the course vocabulary is left out (with 3.11.7 only ``calls``, for
  a degree sign, before the cap is reached); a paragraph (text between blank lines) of 80 or
  more characters that already appeared in an earlier topic is left out (topics overlap, e.g.
  ``try`` is part of ``compound``), so validation text is not a copy of training text; whole
  topics are taken while the total stays within ``DOCS_MAX_CHARS``.

Every character of both texts is in ``lora_lab.data.VOCAB`` (checked with ``encode``, which
refuses anything else). ``PSF_LICENSE.txt`` is copied from the installed Python's
``LICENSE.txt`` (the licence of both texts).
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lora_lab.data import decode, encode, sha256_of  # noqa: E402

OUT = ROOT / "data" / "texts"
MODULES = ("textwrap.py", "string.py", "graphlib.py", "json/__init__.py", "json/decoder.py",
           "json/encoder.py", "json/scanner.py", "json/tool.py", "dataclasses.py",
           "contextlib.py", "pprint.py")
PUNCTUATION = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                             "\u2026": "...", "\u2014": "--", "\u2013": "-"})
DOCS_MAX_CHARS = 250_000
MIN_REPEATED_PARAGRAPH = 80


def in_vocabulary(text: str) -> bool:
    try:
        encode(text)
    except ValueError:
        return False
    return True


def python_code(lib: Path) -> str:
    parts = []
    for module in MODULES:
        source = (lib / module).read_text(encoding="utf-8")
        parts.append(f"# ---- Lib/{module} ----\n{source}\n")
    return "".join(parts)


def python_docs() -> tuple[str, list[str], list[str]]:
    from pydoc_data.topics import topics

    seen: set[str] = set()
    texts, kept, dropped = [], [], []
    total = 0
    for name, text in topics.items():
        text = text.translate(PUNCTUATION)
        if not in_vocabulary(text):
            dropped.append(name)
            continue
        paragraphs = [p for p in text.split("\n\n")
                      if len(p) < MIN_REPEATED_PARAGRAPH or p not in seen]
        seen.update(text.split("\n\n"))
        text = "\n\n".join(paragraphs).strip("\n") + "\n\n\n"
        if total + len(text) > DOCS_MAX_CHARS:
            break
        texts.append(text)
        kept.append(name)
        total += len(text)
    return "".join(texts), kept, dropped


def main() -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    OUT.mkdir(parents=True, exist_ok=True)
    docs, kept, dropped = python_docs()
    for name, text in (("python_code.txt", python_code(lib)), ("python_docs.txt", docs)):
        if decode(encode(text)) != text:  # also refuses tabs, which encode would expand
            raise SystemExit(f"{name}: holds a tab or a character outside the vocabulary")
        (OUT / name).write_bytes(text.encode("ascii"))
    shutil.copyfile(lib / "LICENSE.txt", OUT / "PSF_LICENSE.txt")

    print(f"Python {sys.version.split()[0]} ({sys.implementation.name}), stdlib {lib}")
    print(f"modules: {', '.join(MODULES)}")
    print(f"topics kept ({len(kept)}): {kept[0]} .. {kept[-1]}; left out for characters "
          f"outside the vocabulary: {dropped}")
    for name in ("python_code.txt", "python_docs.txt", "PSF_LICENSE.txt"):
        data = (OUT / name).read_bytes()
        print(f"data/texts/{name}: {len(data):,} bytes, sha256 {sha256_of(data)}")


if __name__ == "__main__":
    main()
