"""What every benchmark in ``bench/`` shares: one way to report a figure for ``make bench``.

A benchmark prints its own story as it likes, and for each headline figure one line
``emit(...)`` writes: a JSON object with ``bench_figure``. ``bench/run_all.py`` runs every
benchmark, collects those lines and prints one table, each figure beside the reference measured
in the same run (same machine, same moment) and the ratio. Use it from a benchmark run as
``python bench/<name>.py`` (its folder is then on ``sys.path``)::

    from benchkit import emit
    emit("search p95", p95, "ms", reference="GET one card p95", reference_value=ref_p95)
"""

from __future__ import annotations

import json
import sys

#: the key that marks a line as a figure for the table
MARK = "bench_figure"


def emit(
    figure: str,
    value: float,
    unit: str,
    *,
    reference: str | None = None,
    reference_value: float | None = None,
    target: str | None = None,
) -> None:
    """Print one figure (and its same-run reference) as a JSON line for ``run_all.py``."""
    line = {
        MARK: figure,
        "value": round(float(value), 3),
        "unit": unit,
        "reference": reference,
        "reference_value": None if reference_value is None else round(float(reference_value), 3),
        "target": target,
    }
    print(json.dumps(line, ensure_ascii=False), flush=True)
    sys.stdout.flush()
