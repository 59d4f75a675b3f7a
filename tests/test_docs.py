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
