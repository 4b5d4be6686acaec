"""Test configuration: offline Hugging Face, hypothesis profiles.

HYPOTHESIS_PROFILE=ci (default): a few dozen examples per property, minutes in all.
HYPOTHESIS_PROFILE=thorough: >= 1000 examples per property (`make test-thorough`).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

_common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile("ci", max_examples=30, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.register_profile("dev", max_examples=10, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
