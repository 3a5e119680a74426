"""Citations point at files in this repository: no ``design.md`` (it lives outside), every
``docs/<page>.md`` a docstring or comment names exists, and every ``page.md#anchor`` link in
the docs and the README lands on a heading of that page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for p in (ROOT / "staypoint").rglob("*") if p.is_file() and p.suffix in {".py", ".toml", ".j2"}]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([\w./-]*\.md)?#([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.MULTILINE)}


def test_nothing_cites_a_design_document_outside_the_repository() -> None:
    cited = [f"{p.relative_to(ROOT)}" for p in [*SOURCES, *PAGES] if "design.md" in p.read_text()]
    assert cited == []


def test_docs_pages_cited_in_the_code_exist() -> None:
    missing = sorted(
        f"{p.relative_to(ROOT)}: {name}"
        for p in SOURCES
        for name in set(re.findall(r"docs/[\w-]+\.md", p.read_text()))
        if not (ROOT / name).exists()
    )
    assert missing == []


def test_links_to_a_heading_land_on_one() -> None:
    broken = []
    for page in PAGES:
        for target, anchor in LINK.findall(page.read_text()):
            path = (page.parent / target).resolve() if target else page
            if path.suffix == ".md" and path.exists() and anchor not in anchors(path):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert broken == []


def test_the_slug_is_githubs() -> None:
    assert slug("Topics (MQTT 5, QoS 1 unless noted)") == "topics-mqtt-5-qos-1-unless-noted"
    assert slug("The kiosk ↔ agent link") == "the-kiosk--agent-link"
    assert slug("Bounds: part of the event contract") == "bounds-part-of-the-event-contract"
