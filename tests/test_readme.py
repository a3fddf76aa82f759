"""The README's shell examples can be pasted: each bash block is valid shell, with no `<placeholder>`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", ROOT / "docker" / "README.md")


def bash_blocks(document: Path) -> list[str]:
    """The ```bash blocks of a Markdown file."""
    return re.findall(r"```bash\n(.*?)```", document.read_text(), re.DOTALL)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_examples_parse(document: Path) -> None:
    blocks = bash_blocks(document)
    assert blocks
    for block in blocks:
        checked = subprocess.run(["bash", "-n"], input=block, text=True, capture_output=True, timeout=10)
        assert checked.returncode == 0, (checked.stderr, block)


def test_the_api_examples_get_an_id_instead_of_a_placeholder() -> None:
    text = (ROOT / "README.md").read_text()
    assert not re.search(r"<id\b", text)
    assert 'curl -s -o cat.jpg "localhost:8000/images/$ID"' in text


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_issue_is_named(document: Path) -> None:
    """The README describes the code as it is, not the tracker: no `issue 12` or `(issue [name])`."""
    assert not re.findall(r"\bissues?\s*(?:\d|\[|#)", document.read_text(), re.IGNORECASE)
