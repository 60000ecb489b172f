"""``make bench``: run every benchmark in ``bench/`` and print one table of their figures.

Each benchmark runs as its own process (``python bench/<name>.py``), its output shown as it
comes; the figures it reports with ``benchkit.emit`` (a JSON line each) are collected. Then the
platform's own figures are measured here: ``make run``'s time to ready and the idle memory
(RSS) of every process of the stack. The table shows each figure beside the reference measured
in the same run and the ratio, so a slow or busy machine moves both sides alike.

    .venv/bin/python bench/run_all.py [--only gateway catalog_search ...] [--skip ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from benchkit import MARK

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: not benchmarks: this runner and the shared helper
NOT_BENCHMARKS = {"run_all", "benchkit"}
#: the platform's own figures, measured by this runner
STACK = "platform"


@dataclass(frozen=True)
class Figure:
    bench: str
    figure: str
    value: float
    unit: str
    reference: str | None
    reference_value: float | None
    target: str | None

    @property
    def ratio(self) -> float | None:
        if self.reference_value in (None, 0):
            return None
        return self.value / self.reference_value  # type: ignore[operator]


def benchmarks(only: Sequence[str], skip: Sequence[str]) -> list[Path]:
    found = sorted(p for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS)
    return [p for p in found if (not only or p.stem in only) and p.stem not in skip]


def figures_in(bench: str, line: str) -> Iterator[Figure]:
    """The figures a line of a benchmark's output carries, if any."""
    text = line.strip()
    if not text.startswith("{"):
        return
    try:
        data: dict[str, Any] = json.loads(text)
    except ValueError:
        return
    if MARK in data:
        yield Figure(
            bench,
            str(data[MARK]),
            float(data["value"]),
            str(data.get("unit") or ""),
            data.get("reference"),
            data.get("reference_value"),
            data.get("target"),
        )
    elif data.get("bench") == "inquiry_roundtrip" and "p99_ms" in data:
        # its one-line JSON report, read until it emits figures itself
        yield Figure(
            bench,
            "inquiry round trip p99",
            float(data["p99_ms"]),
            "ms",
            str(data.get("reference", "reference read")) + " p99",
            data.get("reference_p99_ms"),
            f"<= {data.get('target_p99_ms')} ms",
        )


def run_benchmark(script: Path, log_dir: Path) -> tuple[list[Figure], int, float]:
    """Run one benchmark, echoing its output; its figures, exit code and wall seconds."""
    print(f"\n== {script.relative_to(ROOT)}", flush=True)
    began = time.monotonic()
    found: list[Figure] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (log_dir / f"{script.stem}.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
            found.extend(figures_in(script.stem, line))
        code = process.wait()
    return found, code, time.monotonic() - began


# ------------------------------------------------------------------ the platform's own figures
def hello() -> Any:
    """The smallest FastAPI app: the floor every service process pays (the reference)."""
    from fastapi import FastAPI  # noqa: PLC0415

    app = FastAPI()

    @app.get("/livez")
    def live() -> dict[str, str]:
        return {"status": "live"}

    return app


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def with_children(pid: int) -> float:
    return rss_mib(pid) + sum(with_children(child) for child in children_of(pid))


def reference_process(port: int) -> tuple[float, float]:
    """Start the smallest FastAPI app under uvicorn; (seconds to its first 200, idle RSS)."""
    began = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "run_all:hello",
            "--factory",
            "--app-dir",
            str(HERE),
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() - began > 60:
                    raise
                time.sleep(0.05)
        ready = time.monotonic() - began
        time.sleep(3)
        return ready, rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(15)


def platform_figures(idle_seconds: float) -> list[Figure]:
    """``make run``'s time to ready and each process's idle RSS, with their references."""
    from panjereh.devstack.testing import pick_port_base, start_stack, stop_stack  # noqa: PLC0415

    print("\n== make run: time to ready, idle memory", flush=True)
    reference_ready, reference_rss = reference_process(pick_port_base())
    with tempfile.TemporaryDirectory(prefix="panjereh-bench-") as directory:
        began = time.monotonic()
        stack = start_stack(Path(directory) / "var", Path(directory) / "stack.out")
        ready = time.monotonic() - began
        try:
            time.sleep(idle_seconds)
            state = stack.state()
            processes = dict(state["processes"])  # type: ignore[call-overload]
            memory = {name: with_children(int(pid)) for name, pid in processes.items()}
            broker = state.get("broker")
            if isinstance(broker, int):
                memory["kafka (Tansu)"] = rss_mib(broker)
            postmaster = Path(str(state.get("postgres_data"))) / "postmaster.pid"
            if postmaster.exists():
                pid = int(postmaster.read_text().splitlines()[0])
                memory["postgresql (all backends)"] = with_children(pid)
            memory["supervisor"] = rss_mib(stack.process.pid)
        finally:
            stop_stack(stack)
    figures = [
        Figure(
            STACK,
            "make run: time to ready",
            ready,
            "s",
            "one bare FastAPI process: time to first 200",
            reference_ready,
            None,
        )
    ]
    figures += [
        Figure(
            STACK,
            f"idle RSS: {name}",
            mib,
            "MiB",
            "one bare FastAPI process, idle",
            reference_rss,
            None,
        )
        for name, mib in sorted(memory.items())
    ]
    figures.append(
        Figure(STACK, "idle RSS: whole platform", sum(memory.values()), "MiB", None, None, None)
    )
    return figures


# ------------------------------------------------------------------------------- the table
def table(figures: Sequence[Figure], outcomes: dict[str, tuple[int, float]]) -> str:
    rows = [("bench", "figure", "value", "reference (same run)", "ref. value", "ratio", "target")]
    for f in figures:
        rows.append(
            (
                f.bench,
                f.figure,
                f"{f.value:,.2f} {f.unit}",
                f.reference or "",
                "" if f.reference_value is None else f"{f.reference_value:,.2f} {f.unit}",
                "" if f.ratio is None else f"{f.ratio:.2f}x",
                f.target or "",
            )
        )
    for bench, (code, seconds) in outcomes.items():
        if not any(f.bench == bench for f in figures):
            state = "ran, reported no figures" if code == 0 else f"FAILED (exit {code})"
            rows.append((bench, state, f"{seconds:.0f} s wall", "", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="benchmark names (file stems)")
    parser.add_argument("--skip", nargs="*", default=[], help="benchmark names to leave out")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="before reading RSS")
    parser.add_argument("--no-platform", action="store_true", help="skip time-to-ready and RSS")
    options = parser.parse_args(args)
    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    outcomes: dict[str, tuple[int, float]] = {}
    for script in benchmarks(options.only, options.skip):
        found, code, seconds = run_benchmark(script, log_dir)
        figures += found
        outcomes[script.stem] = (code, seconds)
    if not options.no_platform:
        figures += platform_figures(options.idle_seconds)
    print("\n== one table (each figure beside its reference from the same run)\n")
    print(table(figures, outcomes))
    print(
        f"\nlogs: {log_dir}; load average (1 min): {os.getloadavg()[0]:.2f}; cpus: {os.cpu_count()}"
    )
    return 1 if any(code != 0 for code, _ in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
