"""``python -m panjereh.devstack.prepare MODULE...``: run several ``python -m`` steps in one
interpreter, in order, stopping at the first that fails.

The local stack migrates and seeds every service before starting it. As one process per step,
each paid the interpreter's start and the import of SQLAlchemy, Alembic, pydantic and the
platform's kernel again (eight processes on two cores); here they are imported once and every
step after the first pays only for its own service's modules. Each step runs exactly as
``python -m <module>`` would (``runpy``, as ``__main__``, with its own ``sys.argv``), so the
service's migrate and seed commands stay the ones containers run. After each step that
succeeds a line ``DONE_PREFIX <module>`` on standard output tells the stack, which starts a
service as soon as its own steps are done.
"""

from __future__ import annotations

import runpy
import sys
import time
import traceback
from collections.abc import Sequence

#: Starts the line written after each step that succeeded.
DONE_PREFIX = "panjereh-step-done"


def run_step(module: str) -> int:
    """Run ``module`` as ``__main__``; its exit code (0 when it returns normally)."""
    saved = sys.argv
    sys.argv = [module]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        sys.argv = saved
    return 0


def main(modules: Sequence[str]) -> int:
    for module in modules:
        began = time.monotonic()
        code = run_step(module)
        took = time.monotonic() - began
        sys.stderr.write(f"step {module}: exit {code} in {took:.1f} s\n")
        sys.stderr.flush()
        if code != 0:
            return code
        sys.stdout.write(f"{DONE_PREFIX} {module}\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
