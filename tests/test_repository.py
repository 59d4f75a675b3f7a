"""The repository stands alone: nothing in it points outside it, or at a tracker.

A clone is all a reader has: a link that climbs out of the clone, a design
note that lives elsewhere, or a tracker's ticket number leads nowhere for them.
(The samples below that must be caught are assembled from parts, so that this
file itself passes its own check.)
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

OUTSIDE = re.compile(r"\.\./shared\b|/work/shared\b|\.\./(?:DESIGN|STYLE)\.md")
"""Where the team's notes live, beside the repository: never a reader's."""
TARGET = re.compile(r"\]\(\s*([^)\s]+)\)|(?:href|src)=[\"']([^\"']+)[\"']")
ISSUE = re.compile(r"(?i)\b(?:issues?|tickets?|bugs?|PRs?|pull requests?)\s+(?:no\.?\s*)?#?\d+\b"
                   r"|(?<![\w&/#-])#\d{1,5}\b")
MD_NAME = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    this = Path(__file__).resolve()  # (its own samples of what is refused)
    return [ROOT / n for n in names.split()
            if (ROOT / n).is_file() and n != "LICENSE" and (ROOT / n).resolve() != this]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text()
    except (UnicodeDecodeError, OSError):
        return None


def escapes(path: Path, line: str) -> bool:
    """Does this line link (a relative markdown link, href or src) above the repository,
    or name the notes beside it?"""
    if OUTSIDE.search(line):
        return True
    for groups in TARGET.findall(line):
        target = next(g for g in groups if g)
        if ".." in target.split("/") and not re.match(r"[a-z]+:", target) \
                and not (path.parent / target).resolve().is_relative_to(ROOT):
            return True
    return False


def test_nothing_links_outside_the_repository() -> None:
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
             for p in tracked() if (text := text_of(p)) is not None
             for n, line in enumerate(text.splitlines(), 1) if escapes(p, line)]
    assert not found, "\n".join(found)


def test_markdown_links_resolve_inside_the_repository() -> None:
    broken = []
    for p in tracked():
        if p.suffix != ".md" or (text := text_of(p)) is None:
            continue
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # http:, mailto:: not a file
                continue
            resolved = (p.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{p.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)


def test_named_documents_exist_in_the_repository() -> None:
    # A comment saying "see DESIGN.md" must name a file a reader of the clone has.
    present = {p.name for p in tracked()}
    missing = [f"{p.relative_to(ROOT)}:{n}: {name}"
               for p in tracked() if (text := text_of(p)) is not None
               for n, line in enumerate(text.splitlines(), 1)
               for name in MD_NAME.findall(line) if name not in present]
    assert not missing, "\n".join(missing)


def test_no_issue_numbers() -> None:
    found = []
    for p in tracked():
        if (text := text_of(p)) is None:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            match = ISSUE.search(line)
            # `#123` alone is a colour in CSS and code; in prose (markdown) it is an issue.
            if match and (p.suffix == ".md" or not match.group().startswith("#")):
                found.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


UP = "." + "./"
TICKET = "iss" + "ue"


@pytest.mark.parametrize("text", [f"see {UP}shared/DESIGN.md", f"[d]({UP}x.md)",
                                  f'href="{UP}up.html"', f"[d](docs/{UP}{UP}x.md)"])
def test_the_outside_check_can_fail(text: str) -> None:
    assert escapes(ROOT / "README.md", text)


def test_a_link_up_from_a_folder_into_the_repository_is_fine() -> None:
    assert not escapes(ROOT / "docs" / "README.md", "[../README.md](../README.md)")


@pytest.mark.parametrize("text", [f"The goals of {TICKET} 7", "fixed in " + "#" + "12",
                                  f"see {TICKET.title()} " + "#" + "3", "PR" + " 45 did it"])
def test_the_issue_check_can_fail(text: str) -> None:
    assert ISSUE.search(text)


@pytest.mark.parametrize("text", ["IPv4 /16../24", "p99.9", "step 7 of 9", "`bench/README.md`"])
def test_the_checks_pass_ordinary_text(text: str) -> None:
    assert not escapes(ROOT / "README.md", text)
    assert not ISSUE.search(text)
