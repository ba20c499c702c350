"""The acceptance page's verdict, which the model card opens with too: PASSED, or FAILED with each failed
criterion's limit and measurement."""

from __future__ import annotations

from typing import Any

import pytest

from inspectloop.reports.acceptance import verdict_callout
from tests.reports.page_parts import parse


def result(name: str, passed: bool, limit: str = "≥ 95%", measured: str = "90%") -> dict[str, Any]:
    return {"name": name, "passed": passed, "limit_text": limit, "measured_text": measured, "detail": "..."}


@pytest.mark.parametrize(("case", "document", "text", "failed_items"), [
    ("passed", {"passed": True, "test_images": 3490, "results": [result("escape rate", True)] * 9},
     "PASSED All 9 criteria met on 3,490 frozen test images.", []),
    ("failed", {"passed": False, "test_images": 450,
                "results": [result("escape rate", True), result("review rate", False, "≤ 20%", "84.89%"),
                            result("scratch <b> recall", False)]},
     "FAILED 2 of 3 criteria not met on 450 frozen test images:",
     ["review rate: must be ≤ 20%, measured 84.89%", "scratch <b> recall: must be ≥ 95%, measured 90%"]),
    ("failed, stored before results were kept", {"passed": False, "failed": ["p95 latency"]},
     "FAILED Criteria not met: p95 latency.", []),
    ("passed, stored before results were kept", {"passed": True, "failed": []}, "PASSED All criteria met.", []),
])
def test_the_verdict_names_each_failed_criterion_with_its_limit(case: str, document: dict[str, Any], text: str,
                                                                failed_items: list[str]) -> None:
    callout = parse(verdict_callout(document)).top_level()[0]
    assert callout.text().startswith(text), case
    assert [li.text() for li in callout.find_all("li")] == failed_items
    assert ("pass" in callout.classes()) is document["passed"]
