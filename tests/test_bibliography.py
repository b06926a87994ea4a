"""The bibliography parses, and every citation in the chapters has an entry."""

import json
import re
from pathlib import Path

import pybtex.database

ROOT = Path(__file__).resolve().parents[1]


def test_every_cited_key_is_in_references_bib():
    entries = pybtex.database.parse_file(ROOT / "references.bib").entries
    cited = set()
    sources = [p.read_text() for p in ROOT.glob("chapters/**/*.md")] + [
        "".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])
        for p in ROOT.glob("chapters/**/*.ipynb")
    ]
    for text in sources:
        for keys in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", text):
            cited.update(k.strip() for k in keys.split(","))
    assert cited, "no citation found: the pattern is wrong"
    missing = sorted(cited - set(entries))
    assert not missing, f"cited but not in references.bib: {missing}"
