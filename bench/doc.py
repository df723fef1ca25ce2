"""docs/benchmarks.md: each benchmark script owns one section between its markers."""

from __future__ import annotations

import re
from pathlib import Path

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

DOC_SKELETON = """\
# Benchmarks

Results of the scripts in `bench/` (how to run them: `bench/README.md`). They are run on
demand, not as part of the test suite. Each script owns one section, between its
`<!-- NAME:start -->` and `<!-- NAME:end -->` markers, and rewrites only that section.
Figures are medians of several repetitions; compared targets are measured on the same
machine in the same run. The machine and date are in each section.
"""


def write_section(name: str, section: str, path: Path = DOC_PATH) -> None:
    """Replace the section `name` (markers included in `section`), or append it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else DOC_SKELETON
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_suffix(f".{name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def cpu_model() -> str:
    """The processor's model name, for the machine line of a section."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
