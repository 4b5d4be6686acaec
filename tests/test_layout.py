"""The package's boundaries: `fastlogits` needs NumPy only (torch and transformers only for
`fastlogits.transformers` / `fastlogits.hf`, the model side); the benchmark harness is not in the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "fastlogits"

WITHOUT_TORCH = """
import sys
for name in ("torch", "transformers"):
    sys.modules[name] = None  # importing them now raises ImportError
import numpy as np
import fastlogits as fl
from fastlogits import *  # noqa: F403  (must not reach for the model side)
from fastlogits import beam, errors, pipeline, processors, sampling
s = np.random.default_rng(0).normal(size=(2, 50)).astype(np.float32)
ids = np.zeros((2, 3), np.int64)
pipe = fl.LogitsPipeline.from_generation_config(do_sample=True, top_k=5, temperature=0.7, repetition_penalty=1.2)
tokens = pipe.sample(ids, s, seed=0)
assert tokens.shape == (2,)
try:
    fl.hf
except ImportError:
    print("ok")
"""


def test_the_numpy_side_never_imports_torch():
    r = subprocess.run([sys.executable, "-c", WITHOUT_TORCH], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_the_benchmark_harness_is_not_in_the_package():
    assert not [p.name for p in PACKAGE.rglob("*.py") if "bench" in p.name]


def test_hf_is_the_transformers_subpackage():
    import fastlogits as fl
    import fastlogits.hf as hf
    import fastlogits.transformers as flt

    assert hf.__all__ == flt.__all__
    assert all(getattr(hf, n) is getattr(flt, n) for n in flt.__all__)
    assert fl.generate is flt.generate and fl.stream is flt.stream
