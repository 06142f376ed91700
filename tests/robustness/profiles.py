"""Hypothesis settings of the fuzz suites: fixed and derandomized (`ci`, a few hundred examples
in all, the CI step) unless `HYPOTHESIS_PROFILE=slow` asks for thousands.

Used as `@fuzz_settings()` on each test rather than loaded globally, so the other hypothesis
tests of the default run keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["fuzz_settings"]

_COMMON = dict(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
_EXAMPLES = {"ci": 1, "slow": 25}  # a multiplier of each test's own count


def fuzz_settings(max_examples: int = 30, **overrides) -> settings:
    """`max_examples` in the `ci` profile, 25 times as many in `slow`."""
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    if profile not in _EXAMPLES:
        raise ValueError(f"HYPOTHESIS_PROFILE={profile!r}: use one of {sorted(_EXAMPLES)}")
    return settings(max_examples=max_examples * _EXAMPLES[profile], **{**_COMMON, **overrides})
