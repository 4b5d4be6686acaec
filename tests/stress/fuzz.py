"""Robustness fuzzer: every public entry point of fastlogits, hypothesis-generated inputs, worker
subprocesses (`make fuzz`; not part of `make test`).

    .venv/bin/python tests/stress/fuzz.py --seconds 300 --report /tmp/fuzz_report.json

The parent process draws cases (tests/stress/strategies.py: Python source, so that a finding's
reproducer is exactly the code that ran) and sends them to a worker process, which executes them step
by step and classifies each call of the library:

ok                  returned, and the result passed its checks
clean-rejection     raised a fastlogits.FastLogitsError (InvalidArgumentError / InvalidTypeError)
unclean-rejection   raised any other Exception (OverflowError, a bare TypeError / ValueError, ...)
panic               raised a BaseException that is not an Exception (pyo3_runtime.PanicException)
crash               the worker died during the call (signal, abort, nonzero exit, OOM kill)
hang                the call ran past --timeout seconds (the worker is killed)
silent-nan          returned scores holding NaN / +inf where the input held none
half-modified       raised, but the scores buffer (its whole underlying memory) changed
half-modified-documented   the same, where the documentation says so (`sample` on a row left all -inf)
input-mutated       modified an input it must not modify: ids; scores of `fastlogits.hf` adapters
                    (they must return a new tensor); scores that are not eligible for in-place work
                    (non-contiguous, read-only, other dtypes); memory outside the scores view
bad-result          returned something malformed: wrong shape / type / dtype, token ids out of range or
                    on a -inf score, greedy not the argmax, top-n not sorted, ...
slow                took longer than --slow seconds (not fatal; steps with their own timeout: scaled)

Findings are deduplicated by (entry point, outcome, exception type, normalized message); for each the
shortest reproducer seen is kept, then (--verify-seconds) re-run in a fresh worker and shrunk by
dropping the steps it does not need. Exit status 1 if any crash / panic / hang / silent-nan /
half-modified / input-mutated / bad-result finding was made.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

FATAL = ("crash", "panic", "hang", "silent-nan", "half-modified", "input-mutated", "bad-result")
ORDER = (
    "ok",
    "clean-rejection",
    "unclean-rejection",
    "panic",
    "crash",
    "hang",
    "silent-nan",
    "half-modified",
    "half-modified-documented",
    "input-mutated",
    "bad-result",
    "slow",
)
SEVERITY = {
    o: i
    for i, o in enumerate(
        (
            "crash",
            "hang",
            "panic",
            "bad-result",
            "silent-nan",
            "half-modified",
            "input-mutated",
            "unclean-rejection",
            "slow",
            "half-modified-documented",
        )
    )
}


# ===================================================================================================
# Worker side: executes the steps of a case, classifies each call.


class Snapshot:
    """The bytes of everything a call could write through `x` (the whole underlying buffer, not only the
    view), and the view's values as float64 (None when not numeric)."""

    def __init__(self, x: Any):
        import numpy as np

        self.kind = None
        self.values = None
        self.dtype = None
        self.shape = None
        if isinstance(x, np.ndarray):
            root = x
            while isinstance(root.base, np.ndarray):
                root = root.base
            self.kind, self.root, self.bytes = "np", root, root.tobytes()
            self.dtype = str(x.dtype)
            self.shape = x.shape
            if x.dtype.kind in "fiub":
                self.values = np.array(x, dtype=np.float64)
            self.offset = x.ctypes.data - root.ctypes.data
            self.nbytes = x.nbytes
        elif _is_torch(x):
            import torch

            self.shape = tuple(x.shape)
            self.dtype = str(x.dtype).replace("torch.", "")
            if x.device.type == "meta":
                self.kind = "meta"
                return
            self.kind = "torch"
            self.root = x
            self.bytes = _storage_bytes(x)
            if not (x.is_complex()):
                self.values = x.detach().to("cpu", torch.float64).numpy().copy()
            self.offset = x.storage_offset() * x.element_size()
            self.nbytes = x.numel() * x.element_size()
        elif isinstance(x, list):
            self.kind, self.root, self.bytes = "list", x, repr(x)
            try:
                arr = np.asarray(x, dtype=np.float64)
                self.values, self.shape = arr, arr.shape
            except (TypeError, ValueError):
                pass

    def current(self) -> Any:
        if self.kind == "np":
            return self.root.tobytes()
        if self.kind == "torch":
            return _storage_bytes(self.root)
        if self.kind == "list":
            return repr(self.root)
        return None

    def changed(self) -> bool:
        return self.kind in ("np", "torch", "list") and self.current() != self.bytes

    def changed_outside_view(self) -> bool:
        if self.kind not in ("np", "torch"):
            return False
        now = self.current()
        a, b = self.offset, self.offset + self.nbytes
        return now[:a] != self.bytes[:a] or now[b:] != self.bytes[b:]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "untyped_storage")


def _storage_bytes(t: Any) -> bytes:
    import torch

    u = torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())
    return u.numpy().tobytes()


def _eligible(x: Any) -> bool:
    """Processed in place by the documented rules (a writable C-contiguous float32 ndarray, a contiguous
    float32 CPU tensor without grad)."""
    import numpy as np

    if type(x) is np.ndarray:
        return x.ndim == 2 and x.dtype == np.float32 and x.flags.c_contiguous and x.flags.writeable
    if _is_torch(x):
        import torch

        return (
            x.ndim == 2
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.is_contiguous()
            and not x.requires_grad
        )
    return False


def _as_f64(x: Any) -> Any:
    import numpy as np

    if _is_torch(x):
        import torch

        if x.device.type == "meta" or x.is_complex():
            return None
        return x.detach().to("cpu", torch.float64).numpy()
    if isinstance(x, np.ndarray) and x.dtype.kind in "fiub":
        return x.astype(np.float64)
    return None


def _type_of(x: Any) -> str:
    import numpy as np

    if _is_torch(x):
        return "torch"
    if isinstance(x, np.ndarray):
        return "np"
    return type(x).__name__


def _bad(msg: str, detail: str = "") -> dict:
    return {"outcome": "bad-result", "exc_type": "", "msg": msg, "detail": detail}


def _tokens_ok(out: Any, rows: int, V: int, ref: Any, name: str) -> list[dict]:
    """Token ids: a 1-D integer array of `rows` ids in [0, V); a token must not have a -inf score in `ref`."""
    import numpy as np

    t = _as_f64(out)
    if t is None or _type_of(out) not in ("np", "torch"):
        return [_bad(f"{name} returned {type(out).__name__}, not an array")]
    raw = out.detach().cpu().numpy() if _is_torch(out) else np.asarray(out)
    if raw.dtype.kind not in "iu":
        return [_bad(f"{name} returned dtype {raw.dtype}")]
    if raw.shape != (rows,):
        return [_bad(f"{name} returned shape {raw.shape}, expected ({rows},)")]
    if rows and (raw.min() < 0 or raw.max() >= V):
        return [_bad(f"{name} returned a token id outside [0, V)", f"tokens {raw.tolist()[:16]}, V={V}")]
    if ref is not None and ref.ndim == 2 and rows:
        picked = ref[np.arange(rows), raw]
        if np.any(np.isneginf(picked)):
            r = int(np.flatnonzero(np.isneginf(picked))[0])
            return [_bad(f"{name} drew a token whose score is -inf", f"row {r}, token {int(raw[r])}")]
    return []


def check_result(step: dict, ns: dict, snaps: dict) -> list[dict]:
    """Findings about a call that returned (empty: fine)."""
    import numpy as np

    check = step["check"]
    if not check:
        return []
    out = ns.get("out")
    snap = snaps.get("scores")
    inp = snap.values if snap is not None else None
    found: list[dict] = []
    if inp is not None and inp.ndim == 2:
        B, V = inp.shape
    else:
        B = V = None

    def nonfinite_from_finite(res: Any, what: str) -> None:
        if inp is None or res is None or np.isnan(inp).any() or np.isposinf(inp).any():
            return
        for test, label in ((np.isnan, "NaN"), (np.isposinf, "+inf")):
            hit = test(res)
            if hit.any():
                where = tuple(int(a[0]) for a in np.nonzero(hit))
                quals = []
                if step.get("nonfinite_params"):
                    quals.append("a non-finite/extreme parameter was given")
                finite = inp[np.isfinite(inp)]
                if finite.size and np.abs(finite).max() > 1e30:
                    quals.append("inputs hold huge finite values")
                if snap.dtype in ("float16", "bfloat16"):
                    quals.append(f"{snap.dtype} scores")
                if np.isneginf(inp).all(axis=-1).any() if inp.ndim else False:
                    quals.append("an input row is all -inf")
                if step["extra"].get("python_items"):
                    quals.append("the chain also runs Python / transformers processors")
                q = f" ({'; '.join(quals)})" if quals else ""
                found.append(
                    {
                        "outcome": "silent-nan",
                        "exc_type": "",
                        "msg": f"{label} in {what} from inputs without NaN/+inf{q}",
                        "detail": f"first at index {where}",
                    }
                )
                return

    if check == "scores":
        if snap is None or snap.kind is None or snap.kind == "meta":
            return []
        if out is None:
            return [_bad("returned None instead of the scores")]
        if snap.kind != "list" and _type_of(out) != snap.kind:
            found.append(_bad(f"returned {_type_of(out)} for {snap.kind} scores"))
        res = _as_f64(out)
        if res is None:
            return found + [_bad(f"returned {type(out).__name__}")]
        if snap.shape is not None and tuple(res.shape) != tuple(snap.shape):
            found.append(_bad(f"returned shape {tuple(res.shape)} for scores of shape {tuple(snap.shape)}"))
        elif snap.kind != "list":
            odt = str(out.dtype).replace("torch.", "")
            if odt != snap.dtype:
                found.append(_bad(f"returned dtype {odt} for {snap.dtype} scores"))
        nonfinite_from_finite(res, "the processed scores")
        var = ns.get(step["scores"])
        if step["inplace"] == "never" and snap.changed():
            found.append(
                {
                    "outcome": "input-mutated",
                    "exc_type": "",
                    "msg": "modified its input scores in place (must return a new tensor)",
                    "detail": f"{snap.kind} {snap.dtype} input",
                }
            )
        elif step["inplace"] == "allowed":
            if not _eligible(var) and snap.changed():
                found.append(
                    {
                        "outcome": "input-mutated",
                        "exc_type": "",
                        "msg": "modified scores that are not eligible for in-place processing",
                        "detail": f"{snap.kind} {snap.dtype}",
                    }
                )
            elif _eligible(var) and snap.changed_outside_view():
                found.append(
                    {
                        "outcome": "input-mutated",
                        "exc_type": "",
                        "msg": "wrote outside the scores view (into the enclosing buffer)",
                        "detail": "",
                    }
                )
        return found
    if check == "inplace_scores":  # NativeChain.__call__: processes `scores` in place, returns None
        var = ns.get(step["scores"])
        nonfinite_from_finite(_as_f64(var), "the processed scores")
        return found
    if B is None:
        return []
    if check in ("tokens", "ptokens"):
        ref = inp if check == "tokens" else None
        if check == "ptokens" and step["extra"].get("write_scores") and _eligible(ns.get(step["scores"])):
            ref = _as_f64(ns.get(step["scores"]))
        return _tokens_ok(out, B, V, ref, step["entry"])
    if check == "greedy":
        found = _tokens_ok(out, B, V, None, step["entry"])
        if found or np.isnan(inp).any():
            return found
        raw = np.asarray(out.cpu() if _is_torch(out) else out)
        x32 = inp.astype(np.float32)
        for r in range(B):
            if np.isneginf(x32[r]).all():
                continue
            if raw[r] != int(np.argmax(x32[r])):
                return [
                    _bad(
                        "greedy is not the first argmax",
                        f"row {r}: {int(raw[r])} vs {int(np.argmax(x32[r]))}",
                    )
                ]
        return []
    if check == "log_softmax":
        res = _as_f64(out)
        if res is None or tuple(res.shape) != (B, V):
            return [_bad("log_softmax returned a malformed result")]
        nonfinite_from_finite(res, "log_softmax")
        if not found and np.nanmax(res, initial=-np.inf) > 1e-5:
            found.append(_bad("log_softmax returned a log-probability > 0", f"max {np.nanmax(res)}"))
        return found
    if check == "top_logprobs":
        if not isinstance(out, tuple) or len(out) != 2:
            return [_bad("top_logprobs did not return (values, ids)")]
        vals, ids = _as_f64(out[0]), _as_f64(out[1])
        if vals is None or ids is None or vals.shape != ids.shape or vals.ndim != 2 or vals.shape[0] != B:
            return [_bad("top_logprobs returned malformed arrays")]
        nonfinite_from_finite(vals, "top_logprobs values")
        if ids.size and (ids.min() < -1 or ids.max() >= V):
            found.append(_bad("top_logprobs returned ids outside [-1, V)"))
        elif np.any((ids == -1) & ~np.isneginf(vals)):
            found.append(_bad("top_logprobs: padding id -1 with a finite value"))
        elif ids.size and np.any(
            np.isneginf(np.take_along_axis(inp, np.maximum(ids, 0).astype(np.int64), 1)) & (ids >= 0)
        ):
            found.append(_bad("top_logprobs returned a token whose score is -inf (must be padding)"))
        elif vals.shape[1] > 1 and np.any(np.diff(vals, axis=1) > 0):
            found.append(_bad("top_logprobs values are not sorted (most likely first)"))
        return found
    if check == "beam_step":
        if not isinstance(out, tuple) or len(out) != 3:
            return [_bad("BeamSearch.step did not return (next_tokens, beam_idx, done)")]
        nt, bi = _as_f64(out[0]), _as_f64(out[1])
        if nt is None or bi is None or nt.shape != (B,) or bi.shape != (B,):
            return [
                _bad(
                    "BeamSearch.step returned malformed arrays", f"{getattr(nt, 'shape', None)} for {B} rows"
                )
            ]
        if B and (nt.min() < 0 or nt.max() >= V):
            return [_bad("BeamSearch.step returned a token outside [0, V)", f"{nt.tolist()}")]
        if B and (bi.min() < 0 or bi.max() >= B):
            return [_bad("BeamSearch.step returned a beam index outside [0, rows)", f"{bi.tolist()}")]
        return []
    return []


def _generate_check(step: dict, ns: dict) -> list[dict]:
    import ast

    import numpy as np
    from strategies import GPT2_VOCAB

    out = ns.get("out")
    seqs = getattr(out, "sequences", out)
    arr = _as_f64(seqs)
    if arr is None or arr.ndim != 2:
        return [_bad(f"{step['entry']} returned {type(out).__name__}")]
    allowed = set()
    for text in step["extra"].get("pad", []):
        try:
            v = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue
        for x in v if isinstance(v, list) else [v]:
            if isinstance(x, int):
                allowed.add(x)
    gen = arr if "stream" in step["entry"] else arr[:, step["extra"].get("prompt", 0) :]
    bad = [v for v in np.unique(gen).tolist() if not (0 <= v < GPT2_VOCAB) and v not in allowed]
    if bad:
        return [_bad(f"{step['entry']} produced token ids outside the vocabulary", f"{bad[:5]}")]
    return []


def _origin(exc: BaseException) -> str:
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return ""
    f = last.tb_frame.f_code.co_filename
    if f == "<fuzz-step>":
        return "the native extension (called directly)"
    for marker in ("site-packages/", "/python/"):
        if marker in f:
            f = f.split(marker, 1)[1]
    return f"{f}:{last.tb_lineno} in {last.tb_frame.f_code.co_name}"


def run_step(ns: dict, step: dict) -> dict:
    snaps = {}
    for role in ("scores", "ids"):
        var = step[role]
        if var and var in ns:
            try:
                snaps[role] = Snapshot(ns[var])
            except Exception:  # noqa: BLE001  (an input the snapshot cannot read: not checked)
                pass
    exc = None
    t0 = time.perf_counter()
    try:
        exec(compile(step["code"], "<fuzz-step>", "exec"), ns)
    except BaseException as e:  # noqa: BLE001
        exc = e
    took = time.perf_counter() - t0
    if not step["entry"]:
        return {"outcomes": []} if exc is None else {"discard": f"{type(exc).__name__}: {exc}"[:300]}
    outcomes: list[dict] = []
    if exc is not None:
        origin = _origin(exc)
        if isinstance(exc, NameError) and origin.startswith("the native"):
            return {"discard": f"NameError: {exc}"}
        if any(c.__name__ == "FastLogitsError" for c in type(exc).__mro__):
            kind = "clean-rejection"
        elif isinstance(exc, Exception):
            kind = "unclean-rejection"
        else:
            kind = "panic"
        t = type(exc)
        exc_type = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        tb = "".join(traceback.format_exception(t, exc, exc.__traceback__, limit=-4))[-1500:]
        outcomes.append(
            {"outcome": kind, "exc_type": exc_type, "msg": str(exc)[:400], "origin": origin, "tb": tb}
        )
        s = snaps.get("scores")
        if s is not None and s.changed():
            documented = step["entry"].endswith(".sample") and "all -inf" in str(exc)
            outcomes.append(
                {
                    "outcome": "half-modified-documented" if documented else "half-modified",
                    "exc_type": exc_type,
                    "msg": str(exc)[:400],
                    "origin": origin,
                    "detail": f"{s.kind} {s.dtype} scores changed although the call raised",
                }
            )
    else:
        try:
            if step["check"] == "generate":
                outcomes += _generate_check(step, ns)
            else:
                outcomes += check_result(step, ns, snaps)
        except Exception as e:  # noqa: BLE001  (a result the checks cannot read)
            outcomes.append(_bad(f"result could not be checked: {type(e).__name__}: {e}"[:300]))
    i = snaps.get("ids")
    if i is not None and i.changed():
        outcomes.append(
            {"outcome": "input-mutated", "exc_type": "", "msg": "modified input_ids", "detail": ""}
        )
    if not outcomes:
        outcomes.append({"outcome": "ok"})
    if took > step.get("slow", 1e9):
        outcomes.append({"outcome": "slow", "exc_type": "", "msg": f"took {took:.0f} s", "detail": ""})
    return {"outcomes": outcomes}


def worker_main(mem_gb: float) -> None:
    import faulthandler
    import resource
    import warnings

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints go to stderr, the protocol keeps fd 1's old target
    faulthandler.enable()
    warnings.simplefilter("ignore")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if mem_gb > 0:
        lim = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    sys.path.insert(0, str(ROOT / "tests"))  # models.py (tiny_gpt2)
    for line in sys.stdin:
        msg = json.loads(line)
        ns: dict[str, Any] = {"__name__": "__fuzz__"}
        for k, step in enumerate(msg["steps"]):
            proto.write(json.dumps({"t": "start", "i": k}) + "\n")
            res = run_step(ns, step)
            proto.write(json.dumps({"t": "res", "i": k, **res}) + "\n")
            if "discard" in res:
                break
        proto.write(json.dumps({"t": "end"}) + "\n")
        del ns


# ===================================================================================================
# Parent side


class Worker:
    """A worker subprocess and the JSON-lines protocol with it."""

    def __init__(self, env_threads: str | None, mem_gb: float, nproc_cap: int):
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.pop("FASTLOGITS_NUM_THREADS", None)
        if env_threads is not None:
            env["FASTLOGITS_NUM_THREADS"] = env_threads
        self.env_threads = env_threads
        self.err = tempfile.TemporaryFile()
        self.sticky: list[str] = []
        self.cases = 0

        def limits() -> None:
            import resource

            if nproc_cap:  # bounds the threads a runaway thread count can create
                soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
                cap = nproc_cap if hard == resource.RLIM_INFINITY else min(hard, nproc_cap)
                resource.setrlimit(resource.RLIMIT_NPROC, (cap, hard))

        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--mem-gb", str(mem_gb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=limits,
        )
        self.buf = b""

    def send(self, obj: dict) -> bool:
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def recv(self, timeout: float) -> Any:
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                return "timeout"
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return "timeout"
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return "eof"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def close(self) -> None:
        self.kill()
        self.err.close()

    def stderr_tail(self, n: int = 3000) -> str:
        self.err.flush()
        self.err.seek(0, os.SEEK_END)
        size = self.err.tell()
        self.err.seek(max(0, size - n))
        return self.err.read().decode("utf-8", "replace")

    def run(self, steps: list[dict], timeout: float) -> tuple[dict[int, dict], str | None, int, str]:
        """Runs a case: ({step: result}, fate None | 'crash' | 'hang', step the fate hit, detail)."""
        results: dict[int, dict] = {}
        if not self.send({"steps": steps}):
            return results, "crash", 0, self._death()
        current, limit = 0, 30.0
        while True:
            msg = self.recv(limit)
            if msg == "timeout":
                self.kill()
                return results, "hang", current, f"no answer within {limit:.0f} s"
            if msg == "eof":
                return results, "crash", current, self._death()
            if msg["t"] == "start":
                current = msg["i"]
                # Fixtures (imports, the model, arrays) are not under test: a generous limit.
                limit = steps[current].get("timeout") or (timeout if steps[current]["entry"] else 300.0)
            elif msg["t"] == "res":
                results[msg["i"]] = msg
                limit = 30.0
            else:
                self.cases += 1
                return results, None, -1, ""

    def _death(self) -> str:
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.returncode
        if rc is not None and rc < 0:
            try:
                return signal.Signals(-rc).name
            except ValueError:
                return f"signal {-rc}"
        return f"exit {rc}"


_CRASH_LINES = [
    re.compile(p)
    for p in (
        r"panicked at.*",
        r"memory allocation of .*",
        r"fatal runtime error.*",
        r"thread '.*' has overflowed its stack.*",
        r"terminate called.*",
        r"assertion .* failed.*",
        r"Fatal Python error.*",
    )
]


def crash_message(stderr: str) -> str:
    """The most telling line of a dead worker's stderr (a Rust panic / allocation failure first)."""
    for pattern in _CRASH_LINES:
        hits = pattern.findall(stderr)
        if hits:
            return hits[-1][:300]
    return ""


def normalize(msg: str) -> str:
    """The message with the numbers, addresses and values in it made generic (the dedup key)."""
    m = msg.split("\n")[0][:300]
    m = re.sub(r"0x[0-9a-fA-F]+", "0x_", m)
    m = re.sub(r"'[^']{0,80}'", "'_'", m)
    for _ in range(3):
        m = re.sub(r"\[[^\[\]]*\]", "[_]", m)
        m = re.sub(r"\([^()]*\)", "(_)", m)
        m = re.sub(r"\{[^{}]*\}", "{_}", m)
    m = re.sub(r"(?i)-?\b(nan|inf|infinity|true|false|none)\b", "_", m)
    m = re.sub(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", "N", m)
    m = re.sub(r"\b\w+\.py:N\b", "_.py:N", m)
    return m[:200]


@dataclass
class Finding:
    entry: str
    outcome: str
    exc_type: str
    norm: str
    message: str = ""
    origin: str = ""
    detail: str = ""
    count: int = 0
    env: str | None = None
    sticky: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    stderr: str = ""
    tb: str = ""
    reproduced: str = "not checked"
    reproducer: str = ""

    @property
    def key(self) -> tuple:
        return (self.entry, self.outcome, self.exc_type, self.norm)


_SPECIAL_LINE = re.compile(r"^_[vi](\.flat)?\[")  # special values written into a drawn array


def rehead(steps: list[dict], sticky: list[str]) -> list[dict]:
    """The steps with their imports recomputed (after shrinking) and the sticky state after them."""
    import strategies as S

    body = "\n".join([s["code"] for s in steps[1:]] + sticky)
    head = S.Case("", []).header(body)
    if "import fastlogits as fl\n" in body:  # the import itself is under test (the startup probe)
        head.remove("import fastlogits as fl")
    head = dict(_step_defaults(), code="\n".join(head))
    return [head] + [dict(_step_defaults(), code=s) for s in sticky] + steps[1:]


def render(env: str | None, sticky: list[str], steps: list[dict], outcome: dict) -> str:
    """A standalone reproducer: the worker's environment, its sticky state, then the steps."""
    steps = rehead(steps, [])
    lines: list[str] = []
    if env is not None:
        lines += [
            "import os",
            "",
            f"os.environ['FASTLOGITS_NUM_THREADS'] = {env!r}  # the worker's environment",
        ]
    lines += steps[0]["code"].split("\n")
    for s in sticky:
        lines.append(f"{s}  # called earlier in the same process")
    for s in steps[1:-1]:
        lines += s["code"].split("\n")
    last = steps[-1]["code"].split("\n")
    what = outcome["outcome"] + (f": {outcome['exc_type']}" if outcome.get("exc_type") else "")
    last[-1] += f"  # <-- {what}"
    lines += last
    if outcome.get("detail"):
        lines.append(f"# {outcome['detail']}")
    return "\n".join(lines)


class Fuzzer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.worker: Worker | None = None
        self.findings: dict[tuple, Finding] = {}
        self.outcomes: Counter = Counter()
        self.by_entry: dict[str, Counter] = {}
        self.discards: Counter = Counter()
        self.harness_errors: Counter = Counter()
        self.calls = self.cases = self.workers = 0
        self.families: Counter = Counter()
        self.family_time: Counter = Counter()

    # -- workers ------------------------------------------------------------------------------------
    def spawn(self, env: Any = "random") -> None:
        import strategies as S

        if env == "random":
            env = self.rng.choice(S.ENV_THREADS)
        self.workers += 1
        w = Worker(env, self.args.mem_gb, self.args.nproc_cap)
        entry = f"env FASTLOGITS_NUM_THREADS={env!r}" if env is not None else "import fastlogits"
        probe = [
            {"code": "import numpy as np", "entry": ""},
            {"code": "import fastlogits as fl\nout = fl.get_num_threads()", "entry": entry},
            {
                "code": "s = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)\n"
                "i = np.zeros((64, 3), np.int64)\n"
                "out = fl.LogitsPipeline([fl.RepetitionPenaltyLogitsProcessor(1.2), fl.TopPLogitsWarper(0.9)])(i, s)",
                "entry": entry,
            },
        ]
        probe = [dict(_step_defaults(), slow=self.args.slow, **p) for p in probe]
        self.worker = w
        results = self._run(w, probe, "startup")
        imported = results.get(1, {}).get("outcomes", [{}])[0].get("outcome") == "ok"
        if not imported and env is not None:  # the environment is refused (or fatal): fuzz without it
            self.close()
            self.spawn(None)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    # -- running ------------------------------------------------------------------------------------
    def execute(self, case: Any) -> None:
        t0 = time.monotonic()
        try:
            self._execute(case)
        finally:
            self.family_time[case.family.split(":")[0]] += time.monotonic() - t0

    def _execute(self, case: Any) -> None:
        if self.worker is None or self.worker.cases >= self.args.recycle:
            self.close()
            self.spawn()
            if self.worker is None:
                return
        steps = [asdict(s) for s in case.full_steps()]
        nonfinite = any(s["nonfinite_params"] for s in steps if s["entry"])
        for s in steps:
            s["nonfinite_params"] = nonfinite
            s["slow"] = (s["timeout"] or self.args.timeout) * self.args.slow / self.args.timeout
        self.cases += 1
        self.families[case.family.split(":")[0]] += 1
        self._run(self.worker, steps, case.family)

    def _run(self, w: Worker, steps: list[dict], family: str) -> dict[int, dict]:
        results, fate, at, detail = w.run(steps, self.args.timeout)
        env, sticky = w.env_threads, list(w.sticky)
        for k in sorted(results):
            res = results[k]
            if "discard" in res:
                self.discards[f"{family}: {res['discard'][:120]}"] += 1
                break
            self.calls += bool(steps[k]["entry"])
            for o in res["outcomes"]:
                self._count(steps[k]["entry"], o["outcome"])
                if o["outcome"] not in ("ok", "clean-rejection"):
                    self._record(steps[k]["entry"], o, env, sticky, steps[: k + 1])
            if res["outcomes"] and res["outcomes"][0]["outcome"] == "ok" and steps[k]["extra"].get("sticky"):
                w.sticky = [steps[k]["extra"]["sticky"]]
        if fate == "hang" and not steps[at]["entry"]:
            self.discards[f"{family}: a fixture timed out"] += 1
            w.close()
            if w is self.worker:
                self.worker = None
            return results
        if fate is not None:
            entry = steps[at]["entry"] or f"(fixture of {family})"
            stderr = w.stderr_tail()
            o = {
                "outcome": fate,
                "exc_type": detail if fate == "crash" else "",
                "msg": crash_message(stderr) if fate == "crash" else detail,
            }
            if fate == "hang":
                o["msg"] = f"no result within {steps[at].get('timeout') or self.args.timeout:g} s"
            o["stderr"] = stderr[-2000:]
            self.calls += 1
            self._count(entry, fate)
            self._record(entry, o, env, sticky, steps[: at + 1])
            w.close()
            if w is self.worker:
                self.worker = None
        return results

    def _count(self, entry: str, outcome: str) -> None:
        self.outcomes[outcome] += 1
        self.by_entry.setdefault(entry, Counter())[outcome] += 1

    def _record(self, entry: str, o: dict, env: str | None, sticky: list[str], steps: list[dict]) -> None:
        f = Finding(entry, o["outcome"], o.get("exc_type", ""), normalize(o.get("msg", "")))
        f = self.findings.setdefault(f.key, f)
        f.count += 1
        repro = render(env, sticky, steps, o)
        if not f.reproducer or len(repro) < len(f.reproducer):
            f.reproducer, f.steps, f.env, f.sticky = repro, steps, env, sticky
            f.message, f.origin, f.detail = o.get("msg", ""), o.get("origin", ""), o.get("detail", "")
            f.stderr, f.tb = o.get("stderr", ""), o.get("tb", "")

    # -- verification / shrinking ------------------------------------------------------------------
    def reproduces(
        self, f: Finding, env: str | None, sticky: list[str], steps: list[dict], fresh: bool
    ) -> bool:
        """Runs `steps` (with `sticky` state, in a worker with `env`) and tells whether the last step gives
        finding `f` again."""
        if fresh or self.worker is None or self.worker.env_threads != env or self.worker.sticky != sticky:
            self.close()
            self.worker = Worker(env, self.args.mem_gb, self.args.nproc_cap)
        w = self.worker
        full = rehead(steps, sticky)
        results, fate, at, detail = w.run(full, self.args.timeout)
        last = len(full) - 1
        w.sticky = list(sticky)
        if fate is not None:
            stderr = w.stderr_tail()
            self.close()
            if at != last or fate != f.outcome:
                return False
            if fate == "crash":
                return detail == f.exc_type and normalize(crash_message(stderr)) == f.norm
            return True
        res = results.get(last)
        if res is None or "discard" in res:
            return False
        return any(
            (full[last]["entry"], o["outcome"], o.get("exc_type", ""), normalize(o.get("msg", ""))) == f.key
            for o in res["outcomes"]
        )

    def verify(self, budget: float) -> None:
        """Re-runs each finding's reproducer in a fresh worker, then shrinks it: without the worker's
        environment / earlier state, without the steps and the special-value lines it does not need."""
        end = time.monotonic() + budget
        todo = sorted(self.findings.values(), key=lambda f: (SEVERITY.get(f.outcome, 99), f.entry))
        for f in todo:
            if time.monotonic() > end:
                break
            env, sticky, steps = f.env, f.sticky, list(f.steps)

            def still(e: str | None, s: list[str], st_: list[dict], f: Finding = f) -> bool:
                return time.monotonic() < end and self.reproduces(f, e, s, st_, fresh=False)

            if f.outcome == "unclean-rejection":
                # Cheap first: a running worker, without the environment and the earlier state.
                if still(None, [], steps):
                    env, sticky = None, []
                elif not self.reproduces(f, env, sticky, steps, fresh=True):
                    f.reproduced = "no (depends on earlier state in the worker, or flaky)"
                    continue
                f.reproduced = "yes"
            else:
                if not self.reproduces(f, env, sticky, steps, fresh=True):
                    f.reproduced = "no (depends on earlier state in the worker, or flaky)"
                    continue
                f.reproduced = "yes (fresh process)"
                if f.outcome == "hang":
                    continue
                if (env is not None or sticky) and still(None, [], steps):
                    env, sticky = None, []
            for k in range(len(steps) - 2, 0, -1):
                trial = steps[:k] + steps[k + 1 :]
                if still(env, sticky, trial):
                    steps = trial
            for k in range(1, len(steps) - 1):
                lines = steps[k]["code"].split("\n")
                for j in range(len(lines) - 1, -1, -1):
                    if not _SPECIAL_LINE.match(lines[j]):
                        continue
                    trial_lines = lines[:j] + lines[j + 1 :]
                    trial = steps[:k] + [dict(steps[k], code="\n".join(trial_lines))] + steps[k + 1 :]
                    if still(env, sticky, trial):
                        steps, lines = trial, trial_lines
            o = {"outcome": f.outcome, "exc_type": f.exc_type, "detail": f.detail}
            f.env, f.sticky, f.steps = env, sticky, steps
            f.reproducer = render(env, sticky, steps, o)
        self.close()

    # -- report ---------------------------------------------------------------------------------------
    def summary(self, seconds: float) -> dict:
        findings = sorted(
            self.findings.values(), key=lambda f: (SEVERITY.get(f.outcome, 99), f.entry, -f.count)
        )
        return {
            "seconds": round(seconds, 1),
            "cases": self.cases,
            "calls": self.calls,
            "workers_started": self.workers,
            "families": dict(self.families),
            "family_seconds": {k: round(v, 1) for k, v in self.family_time.items()},
            "outcomes": {o: self.outcomes.get(o, 0) for o in ORDER},
            "by_entry": {e: dict(c) for e, c in sorted(self.by_entry.items())},
            "distinct_findings": len(findings),
            "fatal_findings": sum(f.outcome in FATAL for f in findings),
            "findings": [
                {k: v for k, v in asdict(f).items() if k != "steps"} | {"key": list(f.key)} for f in findings
            ],
            "discarded_cases": dict(self.discards.most_common(15)),
            "harness_errors": dict(self.harness_errors),
        }


def _step_defaults() -> dict:
    import strategies as S

    return asdict(S.Step(""))


def print_summary(rep: dict) -> None:
    print("=" * 100)
    print(
        f"fastlogits fuzz: {rep['seconds']} s, {rep['calls']} calls in {rep['cases']} cases, "
        f"{rep['workers_started']} worker processes"
    )
    print(
        "cases (seconds) per family: "
        + ", ".join(
            f"{k} {v} ({rep['family_seconds'].get(k, 0):.0f} s)" for k, v in sorted(rep["families"].items())
        )
    )
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in rep["outcomes"].items()))
    untouched = [e for e, c in rep["by_entry"].items() if not c.get("ok")]
    if untouched:
        print("entry points never called successfully: " + ", ".join(untouched))
    if rep["harness_errors"]:
        print(f"harness errors: {rep['harness_errors']}")
    print(f"distinct findings: {rep['distinct_findings']} ({rep['fatal_findings']} fatal)")
    for n, f in enumerate(rep["findings"], 1):
        print("-" * 100)
        head = f"[{n}] {f['outcome']} in {f['entry']}"
        if f["exc_type"]:
            head += f" -- {f['exc_type']}"
        print(f"{head}  (x{f['count']}, reproduced: {f['reproduced']})")
        if f["message"]:
            print(f"    message: {f['message'][:300]}")
        if f["detail"]:
            print(f"    detail:  {f['detail'][:300]}")
        if f["origin"]:
            print(f"    raised at: {f['origin']}")
        if f["stderr"] and f["outcome"] == "crash":
            tail = [line for line in f["stderr"].strip().split("\n") if line.strip()][-8:]
            print("    stderr tail:\n" + "\n".join("      | " + line[:160] for line in tail))
        print("    reproducer:")
        print("\n".join("      " + line for line in f["reproducer"].split("\n")))
    print("=" * 100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 300)))
    ap.add_argument("--report", help="write the JSON summary here")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds a call may take before it is a hang")
    ap.add_argument("--slow", type=float, default=5.0, help="seconds past which a call is reported as slow")
    ap.add_argument("--verify-seconds", type=float, default=120.0, help="time to re-run and shrink findings")
    ap.add_argument("--recycle", type=int, default=300, help="cases per worker before a fresh one")
    ap.add_argument("--mem-gb", type=float, default=12.0, help="address-space limit of a worker (0: none)")
    ap.add_argument("--nproc-cap", type=int, default=20000, help="RLIMIT_NPROC of a worker (0: unchanged)")
    ap.add_argument("--families", help="comma-separated subset of: " + ", ".join(_families()))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.mem_gb)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import strategies as S
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    fams = tuple(args.families.split(",")) if args.families else None
    strategy = S.cases(fams)
    fz = Fuzzer(args)
    start = time.monotonic()
    deadline = start + args.seconds
    last_print = start
    rounds = 0

    def round_body(data: Any) -> None:
        case = data.draw(strategy)  # drawn even past the deadline: hypothesis wants consistent draws
        if time.monotonic() >= deadline:
            return
        try:
            fz.execute(case)
        except Exception:  # noqa: BLE001  (a bug of this harness: counted, the fuzzing goes on)
            fz.harness_errors[traceback.format_exc(limit=-3)[-400:]] += 1
            fz.close()

    print(
        f"fuzzing for {args.seconds:.0f} s (+ up to {args.verify_seconds:.0f} s to verify findings) ...",
        flush=True,
    )
    try:
        while time.monotonic() < deadline:
            test = given(st.data())(round_body)
            test = settings(
                max_examples=50,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(test)
            if args.seed is not None:
                test = hseed(args.seed + rounds)(test)
            try:
                test()
            except Exception:  # noqa: BLE001  (hypothesis' own complaints: counted, next round)
                fz.harness_errors[traceback.format_exc(limit=-2)[-400:]] += 1
            rounds += 1
            if time.monotonic() - last_print > 30:
                last_print = time.monotonic()
                bad = sum(f.outcome in FATAL for f in fz.findings.values())
                print(
                    f"  {last_print - start:5.0f} s: {fz.calls} calls, {fz.cases} cases, "
                    f"{len(fz.findings)} distinct findings ({bad} fatal)",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        fz.close()
    elapsed = time.monotonic() - start
    if args.verify_seconds > 0 and fz.findings:
        print(f"verifying and shrinking {len(fz.findings)} findings ...", flush=True)
        fz.verify(args.verify_seconds)
    rep = fz.summary(elapsed)
    print_summary(rep)
    if args.report:
        Path(args.report).write_text(json.dumps(rep, indent=2, default=str))
        print(f"report: {args.report}")
    return 1 if rep["fatal_findings"] else 0


def _families() -> list[str]:
    return [
        "processor",
        "pipeline",
        "from_generation_config",
        "sampling",
        "beam",
        "threads",
        "hf",
        "generate",
    ]


if __name__ == "__main__":
    sys.exit(main())
