"""Run dvc.yaml's stages up to targets in dependency order and time each one.

What a profile's time goes on, stage by stage, and the pipeline on a host that has spinfer
but not DVC (a GPU host brought only the wheels it must have). The commands run as
`dvc repro` runs them, from the repository root, without DVC's bookkeeping: every stage
upstream of the targets runs (outputs are overwritten, nothing is skipped as up to date) and
dvc.lock is left alone. Matrix stages expand as DVC names them (``train@resnet18-noisy``).
The profile is params.yaml's ``profile:`` line, as for `dvc repro`.

    python benchmarks/pipeline_stages.py [TARGET ...] [--dry-run] [--dvc-yaml dvc.yaml]

No target: every stage. A failing stage stops the run (exit 1, its name on stderr) after
the timings so far. Last line: key=value (seconds per stage, and the total).
"""

from __future__ import annotations

import argparse
import itertools
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ITEM = re.compile(r"\$\{item\.(\w+)\}")


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]


def _paths(entries) -> tuple[str, ...]:
    """Paths of a deps/outs/metrics list (plain strings or one-key mappings)."""
    out = []
    for entry in entries or ():
        out.extend([entry] if isinstance(entry, str) else list(entry))
    return tuple(p.rstrip("/") for p in out)


def expand(stages: dict) -> list[Stage]:
    """dvc.yaml's stages in file order, matrix stages expanded (name@v1-v2, in DVC's order)."""
    out = []
    for name, body in stages.items():
        matrix = body.get("matrix")
        combos = [{}]
        if matrix:
            keys = list(matrix)
            combos = [dict(zip(keys, v, strict=True)) for v in itertools.product(*matrix.values())]
        for item in combos:

            def sub(text: str, item=item) -> str:
                return ITEM.sub(lambda m: str(item[m.group(1)]), text)

            cmd = body["cmd"]
            cmd = " && ".join(cmd) if isinstance(cmd, list) else cmd
            outs = (
                _paths(body.get("outs")) + _paths(body.get("metrics")) + _paths(body.get("plots"))
            )
            out.append(
                Stage(
                    f"{name}@{'-'.join(str(v) for v in item.values())}" if item else name,
                    sub(cmd),
                    tuple(sub(d) for d in _paths(body.get("deps"))),
                    tuple(sub(o) for o in outs),
                )
            )
    return out


def _produces(stage: Stage, dep: str) -> bool:
    return any(dep == o or dep.startswith(o + "/") or o.startswith(dep + "/") for o in stage.outs)


def upstream(stages: list[Stage], targets: list[str]) -> list[Stage]:
    """The targets and everything they depend on, dependencies first (file order on ties).
    A target naming a matrix stage without its item (``train``) takes all of its items."""
    by_name = {s.name: s for s in stages}
    wanted: list[Stage] = []
    for t in targets:
        hits = [s for s in stages if s.name == t or s.name.startswith(t + "@")]
        if not hits:
            raise SystemExit(f"error: no stage '{t}' in dvc.yaml (known: {', '.join(by_name)})")
        wanted.extend(hits)
    order: list[Stage] = []
    seen: set[str] = set()

    def visit(stage: Stage, path: tuple[str, ...]) -> None:
        if stage.name in seen:
            return
        if stage.name in path:
            raise SystemExit(f"error: dvc.yaml has a cycle through '{stage.name}'")
        for dep in stage.deps:
            for other in stages:
                if other is not stage and _produces(other, dep):
                    visit(other, (*path, stage.name))
        seen.add(stage.name)
        order.append(stage)

    for stage in sorted(wanted, key=stages.index):
        visit(stage, ())
    return order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", help="stages to reach (default: all)")
    ap.add_argument("--dvc-yaml", default=str(ROOT / "dvc.yaml"))
    ap.add_argument("--dry-run", action="store_true", help="list the stages and commands only")
    args = ap.parse_args()
    stages = expand(yaml.safe_load(Path(args.dvc_yaml).read_text())["stages"])
    plan = upstream(stages, args.targets or [s.name for s in stages])
    if args.dry_run:
        for stage in plan:
            print(f"{stage.name}: {stage.cmd}")
        print(f"stages={len(plan)}")
        return
    root = Path(args.dvc_yaml).resolve().parent
    seconds: dict[str, float] = {}
    failed = None
    for stage in plan:
        print(f"{stage.name}: {stage.cmd}", flush=True)
        for out in stage.outs:  # as dvc repro, which makes the outputs' folders
            (root / out).parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rc = subprocess.run(["bash", "-c", stage.cmd], cwd=root).returncode
        seconds[stage.name] = time.perf_counter() - t0
        print(f"  {seconds[stage.name]:.1f} s", flush=True)
        if rc != 0:
            failed = stage.name
            break
    width = max((len(n) for n in seconds), default=5)
    for name, s in seconds.items():
        print(f"{name:{width}s} {s:8.1f} s")
    total = sum(seconds.values())
    print(f"{'total':{width}s} {total:8.1f} s")
    print(" ".join(f"{n}={s:.1f}" for n, s in seconds.items()) + f" total={total:.1f}")
    if failed is not None:
        print(f"error: stage {failed} failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
