"""Write docs/performance.md from the benches' JSON results.

    python bench/write_performance.py [--results DIR] [--out PATH]

Reads throughput.json (and throughput_process.json),
first_failure.json, cells.json, xdist_scaling.json, startup.json, memory.json and learn.json
from
``--results``
(default bench/results/); a missing one is listed as not measured. The analysis in
bench/performance_notes.md is appended.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import RESULTS, ROOT

NOTES = ROOT / "bench" / "performance_notes.md"

COMMANDS = {
    "throughput": "python bench/throughput.py --rounds 3",
    "throughput_process": "python bench/throughput.py --rounds 3 --server-process "
                          "--json bench/results/throughput_process.json",
    "first_failure": "python bench/first_failure.py --runs 5",
    "cells": "python bench/cells.py --seeds 10",
    "xdist_scaling": "python bench/xdist_scaling.py --rounds 2",
    "startup": "python bench/startup.py --rounds 3",
    "memory": "python bench/memory.py",
    "stability": "python bench/stability.py --seeds 3",
    "learn": "python bench/learn.py --server NAME=HOST:PORT/DOMAIN ...  # python -m mtas serve's",
}


def load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def machine_line(data: dict[str, Any]) -> str:
    m = data["machine"]
    load = m.get("load_average")
    return (f"{m['cpus']} CPUs, {m['implementation']} {m['python']}, {m['platform']}; "
            f"{m['date']}" + (f"; load average {load[0]:g} when measured" if load else ""))


def phases_bound(data: dict[str, Any]) -> str:
    """What bounds the systematic phase, from its figures."""
    phase = data["phases"]["systematic"]
    listening = phase.get("listening_seconds")
    waits = "" if listening is None else (
        f" {listening:.1f} s of its {phase['seconds']:.1f} s "
        f"({100 * listening / phase['seconds']:.0f}%) went to {phase['listens']} listens for "
        f"a reply that must not come: each bare line break and end-of-data probe waits at "
        f"least 0.1 s (longer where the server is slow) and the STARTTLS injection probe "
        f"0.2 s, since a client cannot tell \"no reply\" sooner without losing the finding on a "
        f"slower server (the replay of the same sessions on bare sockets waits for them too, "
        f"which is why it is slower than the suite).")
    return ("The systematic phase draws nothing from Hypothesis, yet runs no faster than the "
            "exploration: its time is the server's and the wait for silence." + waits +
            " The rest is the mix the plan asks for: a new connection for each route walked "
            "again (a case whose positive reply moves the session on ends its sharing), a TLS "
            "handshake on each walk of a STARTTLS route, messages. The goal of 0.5 is not "
            "met.")


def throughput(data: dict[str, Any] | None, title: str) -> list[str]:
    if data is None:
        return [f"### {title}", "", "Not measured.", ""]
    lines = [f"### {title}", "", f"Server: {data['server']}. {machine_line(data)}.", "",
             "| measure | per second |", "|---|---:|",
             f"| bare-socket NOOP round trips | {data['noop_per_second']:,} |",
             f"| the suite's sessions replayed on bare sockets (same bytes, no Hypothesis, "
             f"parser or checks) | {data['replay_per_second']:,} |",
             f"| the suite's exchanges (median of {data['rounds']} runs, seeds 0..) | "
             f"{data['suite_per_second']:,} |",
             f"| the suite, if only its I/O took time | {data['ceiling_per_second']:,} |",
             *(f"| of which the {name} phase ({part['exchanges']:,} exchanges in "
               f"{part['seconds']:.1f} s; ratio {part['ratio']:.3f}"
               + (f"; {part['listening_seconds']:.1f} s of it in {part['listens']} listens for "
                  f"a reply that must not come" if "listens" in part else "")
               + f") | {part['per_second']:,} |"
               for name, part in data.get("phases", {}).items()),
             "", f"**Ratio suite / NOOP: {data['ratio']:.3f}** (goal 0.5). The same sessions on "
             f"bare sockets reach {data['replay_ratio']:.3f} of NOOP: that is what the server "
             f"allows this mix of commands (a connection per session, EHLO, MAIL, messages)"
             + (", so no client could reach 0.5 with it." if data["replay_ratio"] < 0.5 else
                ".") + (f" {100 * data['gc_share']:.0f}% of the suite's time was in Python's "
                        f"cyclic garbage collector (inside the layers below)."
                        if "gc_share" in data else ""), "",
             *([phases_bound(data), ""] if "phases" in data else []),
             "Where the suite's time goes (timers around each layer, all runs):", "",
             "| layer | share | µs per exchange |", "|---|---:|---:|"]
    lines += [f"| {name} | {100 * part['share']:.1f}% | {part['us_per_exchange']:.0f} |"
              for name, part in data["breakdown"].items()]
    if data.get("profile"):
        lines += ["", "Top functions by own time (pyinstrument, one run; its overhead inflates "
                  "Python-heavy code):", "", "| share | function | file |", "|---:|---|---|"]
        lines += [f"| {100 * row['share']:.1f}% | `{row['function']}` | `{row['file']}` |"
                  for row in data["profile"]]
    return [*lines, ""]


def first_failure(data: dict[str, Any] | None) -> list[str]:
    if data is None:
        return ["Not measured.", ""]
    lines = [f"{machine_line(data)}. {data['runs']} runs per fault, fresh random seeds, reply "
             f"timeout {data['timeout']:g} s, strict, fail-fast. A hang cannot be seen before "
             f"{data['hang_factor']} x the timeout ({data['hang_factor'] * data['timeout']:g} s "
             f"here; {data['hang_factor'] * 5:g} s with the default 5 s), and a tarpit's slow "
             f"reply is a hang at this timeout.", "",
             "| fault | median s | worst s | found | checks |", "|---|---:|---:|---:|---|"]
    for fault, row in data["faults"].items():
        shown = [f"{x:.2f}" if x is not None else "never" for x in (row["median"], row["worst"])]
        over = " (over 3 s)" if row["median"] is None or row["median"] > 3 else ""
        lines.append(f"| {fault}{over} | {shown[0]} | {shown[1]} | {row['found']}/"
                     f"{len(row['runs'])} | {', '.join(row['checks'])} |")
    errors = sum(row.get("errors", 0) for row in data["faults"].values())
    if errors:
        lines += ["", f"{errors} run(s) ended in Hypothesis's FlakyStrategyDefinition after "
                  f"the run was stopped (fail-fast): see the note on StopRun below."]
    return [*lines, ""]


def cells(data: dict[str, Any] | None) -> list[str]:
    if data is None:
        return ["Not measured.", ""]
    per_seed = " ".join(f"{n}" for n in data["per_seed"].values())
    never = ", ".join(f"{s}/{g}" for s, g in data["never_reached"]) or "none"
    return [f"{machine_line(data)}. Cells: {', '.join(data['states'])} x the 15 seed verbs "
            f"and an unrecognised one ({data['cells']}).", "",
            f"- per seed (0..{data['seeds'] - 1}): {per_seed}",
            f"- median {data['median']:g}, min {data['min']}, max {data['max']}; all seeds "
            f"together {data['union']}/{data['cells']}",
            f"- never reached: {never}", ""]


def xdist(data: dict[str, Any] | None) -> list[str]:
    if data is None:
        return ["Not measured.", ""]
    lines = [f"{machine_line(data)}. Median of {data['rounds']} rounds, seed {data['seed']}, "
             f"one reference server in its own process; wall time of the whole pytest process.",
             "", "| workers (-n) | seconds | exchanges | exchanges/s | outcome |",
             "|---:|---:|---:|---:|---|"]
    lines += [f"| {r['workers']} | {r['seconds']:.2f} | {r['exchanges']:g} | "
              f"{r['per_second']:g} | {r['outcome']} |" for r in data["summary"]]
    lines += ["", "With K workers the run is K shards (`--smtp-shards=auto`: one test item per "
              "worker, each with its own seed and 1/K of the examples), merged in one report. "
              "A default run is a few seconds of work, so each worker's pytest start-up "
              "outweighs what the workers share on this 2-CPU machine; shards pay off with "
              "large budgets (`--smtp-examples=thorough`) and slow servers, where a worker "
              "spends its time waiting for replies.", ""]
    return lines


def startup(data: dict[str, Any] | None) -> list[str]:
    if data is None:
        return ["Not measured.", ""]
    m, labels = data["medians"], data["labels"]
    lines = [f"{machine_line(data)}. Median of {data['rounds']} rounds.", "",
             "| | seconds (x: a ratio) |", "|---|---:|"]
    lines += [f"| {labels[k].strip()} | {v:.2f} |" for k, v in m.items() if k in labels]
    top = ", ".join(f"{k} {v:.2f} s" for k, v in list(data["imports"].items())[:6])
    return [*lines, "", f"Importing the plugin, by package (own modules' time): {top}.", ""]


def memory(data: dict[str, Any] | None) -> list[str]:
    if data is None:
        return ["Not measured.", ""]
    base = data["runs"][data["baseline"]]
    lines = [f"{machine_line(data)}. Per server (tests/hostile_server.py), in a process of "
             f"its own, the server in another: one bare client's connect, EHLO and QUIT (the "
             f"peak of its Python allocations, tracemalloc), then one run of at most "
             f"{data['seconds']:g} s (seed {data['seed']}, reply timeout {data['timeout']:g} s, "
             f"findings settled): the peak of its Python allocations and of the process's "
             f"resident size (start-up included), each also as a ratio to the same run against "
             f"the {data['baseline']}.", "",
             "| server | client KiB | run MiB | ratio | max RSS MiB | ratio | seconds | checks |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, run in data["runs"].items():
        lines.append(f"| {name} | {run['client_peak'] / 1024:.0f} | "
                     f"{run['traced_peak'] / 2**20:.1f} | "
                     f"{run['traced_peak'] / base['traced_peak']:.2f} | "
                     f"{run['max_rss'] / 2**20:.1f} | {run['max_rss'] / base['max_rss']:.2f} | "
                     f"{run['seconds']:.1f} | {', '.join(run['checks']) or '-'} |")
    ratio, worst = max((run["traced_peak"] / base["traced_peak"], name)
                       for name, run in data["runs"].items() if name != data["baseline"])
    client = max(data["runs"].items(), key=lambda item: item[1]["client_peak"])
    return [*lines, "", f"The highest ratio of a hostile server's run is {ratio:.2f} "
            f"({worst}), and the most a single client spent is "
            f"{client[1]['client_peak'] / 1024:.0f} KiB ({client[0]}): what a server sends is "
            f"read 64 KiB at a time and bounded by the reply parser's limits (8 KiB a line, "
            f"1000 lines and 256 KiB a reply). A run's own peak comes from its sessions "
            f"(Hypothesis's data, transcripts, the record), not from what the server sent. "
            f"The verdicts and the time are held by tests/test_hostile_servers.py; this bench "
            f"only measures.", ""]


def stability(data: dict[str, Any] | None) -> list[str]:
    if data is None:
        return ["Not measured.", ""]
    faults = data["faults"]
    lines = [f"{machine_line(data)}. Each fault server alone, a default run (fast budget, "
             f"timeout 0.5 s, messages completed) on seeds 0..{data['seeds'] - 1}. The ESMTP "
             f"server runs without TLS or credentials here, so its STARTTLS faults and "
             f"auth_twice give no finding (tests/test_systematic.py runs them with both).", "",
             f"**Identical finding sets on every seed: {data['identical']} of "
             f"{data['servers']} fault servers.**", "",
             *([f"Measured again after a fix, the others as first measured: "
                f"{', '.join(data['remeasured'])}.", ""] if data.get("remeasured") else [])]
    differing = {name: result for name, result in faults.items() if not result["identical"]}
    if differing:
        lines += ["| fault server | findings on every seed | found on some seeds only |",
                  "|---|---|---|"]
        lines += [f"| {name} | {', '.join(r['findings']) or '-'} | "
                  f"{', '.join(r['not_on_every_seed'])} |" for name, r in differing.items()]
        lines.append("")
    if "single" not in data:
        return lines
    several = {name: result for name, result in faults.items() if result["most_findings"] > 1}
    lines += [f"**One behaviour, one finding: {data['single']} of {data['servers']} fault "
              f"servers have at most one finding on every seed.** Each of the others breaks "
              f"two rules at once (8-bit octets echoed and a reply line over 512 octets; a "
              f"declared SIZE and a message over the limit), or takes several non-standard "
              f"endings of the data, each a finding of its own (SMTP smuggling works through "
              f"each one separately). Their findings (check, cause, code):", ""]
    lines += [f"- {name}: {', '.join(r['findings'])}" for name, r in several.items()]
    return [*lines, ""]


def learning(data: dict[str, Any] | None) -> list[str]:
    if data is None:
        return ["Not measured.", ""]
    lines = [f"{machine_line(data)}. Each server learned as `python -m conformance learn` "
             f"does (profile {data['profile']}, budget {data['budget']:g} s, safe mode), and "
             f"beside it, against the same server, the median of bare connections (connect, "
             f"greeting, QUIT, its reply, close); `x bare`: the learning's seconds over its "
             f"connections' count times that median.", "",
             "| server | states | queries | connections | commands | seconds | bare connection "
             "ms | x bare |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in data["servers"].items():
        states = r["states"] if r["states"] is not None else "none"
        lines.append(f"| {name} | {states}{' (partial)' if r['partial'] else ''} | "
                     f"{r['queries']} | {r['resets']} | {r['steps']} | {r['seconds']:.1f} | "
                     f"{r['bare_connection_ms']:.2f} | {r['over_bare_connections']} |")
    return [*lines, "", "Every query is a new connection (the learner's reset), so a server's "
            "learning costs about its connections; what the learner, the checks and the "
            "commands add is the ratio. A server slow to answer one input is slow to learn: "
            "Exim answers QUIT about 200 ms late on loopback, and queries that end a session "
            "with QUIT are many.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--notes", type=Path, default=NOTES,
                        help="Markdown to append: the analysis of the figures (default "
                             "bench/performance_notes.md)")
    args = parser.parse_args()
    r = {name: load(args.results, name) for name in (
        "throughput", "throughput_process", "first_failure", "cells",
        "xdist_scaling", "startup", "memory", "stability", "learn")}
    lines = ["# Performance", "",
             "Generated by `python bench/write_performance.py` from the JSON results of the "
             "benches below (`bench/results/`); rerun them and this file to refresh it. "
             "Figures from a loaded machine (see its load average) are slower and noisier; "
             "each comparison is measured side by side in one run, so its ratio holds better "
             "than its absolute figures.", "",
             "## Throughput: the suite against bare-socket NOOP", "",
             *(f"    {COMMANDS[k]}" for k in ("throughput", "throughput_process")), "",
             *throughput(r["throughput"], "Reference server in the suite's process "
                                          "(as `pytest` runs it)"),
             *throughput(r["throughput_process"], "Reference server in its own process"),
             "## The same verdict on every seed", "", f"    {COMMANDS['stability']}", "",
             *stability(r["stability"]),
             "## Time to the first failure, per fault server", "",
             f"    {COMMANDS['first_failure']}", "", *first_failure(r["first_failure"]),
             "## Cells reached by a default run", "", f"    {COMMANDS['cells']}", "",
             *cells(r["cells"]),
             "## pytest-xdist", "", f"    {COMMANDS['xdist_scaling']}", "",
             *xdist(r["xdist_scaling"]),
             "## Start-up: `pytest` against a direct run", "", f"    {COMMANDS['startup']}", "",
             *startup(r["startup"]),
             "## Memory against hostile servers", "", f"    {COMMANDS['memory']}", "",
             *memory(r["memory"]),
             "## Learning a server's machine", "", f"    {COMMANDS['learn']}", "",
             *learning(r["learn"])]
    if args.notes.exists():
        lines += [args.notes.read_text().rstrip(), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
