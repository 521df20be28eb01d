"""The annotation tags that frame filters name (``test_sampling.target_filter`` and the like), defined in a low
module so that the config can check a filter without loading the data layer. See ``orbit_lite.data.annotations``
for how a frame's annotation gives its tags."""

from __future__ import annotations

from collections.abc import Iterable

from orbit_lite.errors import OrbitLiteError

ISSUES = (
    "object_not_present_issue",
    "framing_issue",
    "viewpoint_issue",
    "blur_issue",
    "occlusion_issue",
    "overexposed_issue",
    "underexposed_issue",
)
FILTER_TAGS = frozenset(ISSUES) | {f"no_{k}" for k in ISSUES} | {"no_issues", "mixed_issues"}
OBJECT_PRESENT = "no_object_not_present_issue"


def expand_filter(tags: Iterable[str]) -> frozenset[str]:
    """Validate filter tags and expand ``no_issues`` / ``mixed_issues``."""
    out: set[str] = set()
    for tag in tags:
        if tag not in FILTER_TAGS:
            valid = ", ".join(sorted(FILTER_TAGS))
            raise OrbitLiteError(f"unknown annotation filter {tag!r}; valid filters: {valid}")
        if tag == "no_issues":
            out.update(f"no_{k}" for k in ISSUES)
        elif tag == "mixed_issues":
            out.update(ISSUES)
        else:
            out.add(tag)
    return frozenset(out)
