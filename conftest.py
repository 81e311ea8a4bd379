"""Root conftest: hypothesis profiles (quick locally, thorough in CI) and the slow-model gate."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("SIMONSCA_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)
