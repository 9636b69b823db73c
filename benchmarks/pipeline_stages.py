"""Run dvc.yaml's stages up to targets in dependency order and time each one.

What a profile's time goes on, stage by stage, and the pipeline on a host that has spinfer
but not DVC (a GPU host brought only the wheels it must have). The commands run as
`dvc repro` runs them, from the repository root, without DVC's bookkeeping: every stage
upstream of the targets runs (outputs are overwritten, nothing is skipped as up to date) and
dvc.lock is left alone. Matrix stages expand as DVC names them (``train@resnet18-noisy``).
The profile is params.yaml's ``profile:`` line, as for `dvc repro`.

    python benchmarks/pipeline_stages.py [TARGET ...] [--dry-run] [--dvc-yaml dvc.yaml]
                                         [--pull data.dvc]

No target: every stage. ``--pull`` first puts a .dvc file's data in place from the
repository's local DVC remote, as `dvc pull` would, each file's md5 checked. A failing stage
stops the run (exit 1, its name on stderr) after the timings so far. Last line: key=value
(seconds per stage, and the total).
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import itertools
import json
import re
import shutil
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


def local_remote(root: Path) -> Path:
    """The folder of the default DVC remote in .dvc/config (a local remote only)."""
    config = configparser.ConfigParser()
    config.read(root / ".dvc" / "config")
    name = config.get("core", "remote", fallback=None)
    for section in config.sections():
        if name and section.strip("'") == f'remote "{name}"':
            url = config.get(section, "url")
            if "://" in url:
                raise SystemExit(f"error: DVC remote '{name}' is not a local folder: {url}")
            return (root / ".dvc" / url).resolve()
    raise SystemExit(f"error: {root / '.dvc' / 'config'} names no default remote")


def _blob(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]


def pull(dvc_file: Path, remote: Path) -> list[Path]:
    """Put a .dvc file's outputs in place from a local remote (DVC 3's md5 layout).

    Every file's md5 is checked against the remote's manifest; an output is built beside
    its place and renamed over it, so a failure leaves what was there."""
    placed = []
    for out in yaml.safe_load(dvc_file.read_text())["outs"]:
        target = dvc_file.parent / out["path"]
        md5 = out["md5"]
        if md5.endswith(".dir"):
            files = [(e["relpath"], e["md5"]) for e in json.loads(_blob(remote, md5).read_text())]
        else:
            files = [("", md5)]
        staging = target.with_name(f".{target.name}.pulling")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            for relpath, want in files:
                dest = staging / relpath if relpath else staging
                dest.parent.mkdir(parents=True, exist_ok=True)
                blob = _blob(remote, want)
                if not blob.is_file():
                    raise SystemExit(
                        f"error: {dvc_file}: {relpath or out['path']} not in {remote}"
                    )
                shutil.copyfile(blob, dest)
                with dest.open("rb") as f:
                    if hashlib.file_digest(f, "md5").hexdigest() != want:
                        raise SystemExit(
                            f"error: {dvc_file}: {relpath or out['path']} fails its md5"
                        )
        except SystemExit:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        staging.rename(target)
        placed.append(target)
    return placed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", help="stages to reach (default: all)")
    ap.add_argument("--dvc-yaml", default=str(ROOT / "dvc.yaml"))
    ap.add_argument("--dry-run", action="store_true", help="list the stages and commands only")
    ap.add_argument(
        "--pull",
        action="append",
        default=[],
        metavar="FILE.dvc",
        help="first put this .dvc file's data in place from the local remote",
    )
    args = ap.parse_args()
    missing = [f for f in args.pull if not Path(f).is_file()]
    if missing:
        raise SystemExit(f"error: --pull: no file {missing[0]}")
    remote = local_remote(Path(args.dvc_yaml).resolve().parent) if args.pull else None
    for dvc_file in args.pull:
        for placed in pull(Path(dvc_file).resolve(), remote):
            print(f"pulled {placed}", flush=True)
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
