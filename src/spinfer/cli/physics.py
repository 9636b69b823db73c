"""The physics commands: energies, one annealed texture, pictures, Kshape, a preview."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from spinfer.cli.common import ParamsOpt, SetOpt, echo_json, sub_app
from spinfer.errors import InputError

physics_app = sub_app("Energies, single textures, pictures and the dipolar shape anisotropy.")


@physics_app.command()
def energy(
    file: Annotated[Path, typer.Argument(help=".npy or .npz holding an (Lx, Ly, 3) array")],
    lam: Annotated[float, typer.Option("--lam", help="DMI constant lambda (J = 1)")],
    k: Annotated[float, typer.Option("--K", help="perpendicular anisotropy K")],
    d: Annotated[float, typer.Option("--D", help="dipolar constant D")],
    images: Annotated[
        int | None,
        typer.Option("--images", help="dipolar block of M periodic images (default: full sum)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per-term energies (totals over the lattice, J = 1) of a spin configuration."""
    from spinfer.io import load_spins
    from spinfer.physics.energy import Hamiltonian, energy_terms

    if images is not None and images < 0:
        raise InputError(f"--images must be >= 0, got {images}")
    spins = load_spins(file)
    terms = energy_terms(spins, Hamiltonian(dmi=lam, anisotropy=k, dipolar=d), images)
    if as_json:
        echo_json(terms.as_dict())
    else:
        for name, value in terms.as_dict().items():
            typer.echo(f"{name:>11s} {value: .10f}")


@physics_app.command()
def simulate(
    lam: Annotated[float, typer.Option("--lam", help="DMI constant lambda")],
    k: Annotated[float, typer.Option("--K", help="perpendicular anisotropy K")],
    d: Annotated[float, typer.Option("--D", help="dipolar constant D")],
    out: Annotated[Path, typer.Option("--out", help="output .npz (spins) or .png (picture)")],
    seed: Annotated[int, typer.Option("--seed", help="texture seed")] = 0,
    size: Annotated[int, typer.Option("--size", help="lattice size L (L x L)")] = 100,
    size_y: Annotated[
        int | None, typer.Option("--size-y", help="Ly for rectangular lattices")
    ] = None,
    sweeps: Annotated[int | None, typer.Option("--sweeps", help="annealing sweeps")] = None,
    images: Annotated[int | None, typer.Option("--images", help="dipolar image block M")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Anneal one texture at (lambda, K, D); the schedule comes from params.yaml if present."""
    import dataclasses

    from spinfer.io import save_spins
    from spinfer.physics.anneal import Schedule, anneal
    from spinfer.physics.energy import Hamiltonian, energy_terms
    from spinfer.render import save_texture_png

    if out.suffix not in (".npz", ".png"):
        raise InputError(f"--out must end in .npz or .png, got '{out.name}'")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")
    schedule = Schedule()
    if params.exists():
        from spinfer.config import load_params

        schedule = load_params(params).schedule
    if sweeps is not None:
        schedule = dataclasses.replace(schedule, sweeps=sweeps)
    ham = Hamiltonian(dmi=lam, anisotropy=k, dipolar=d)
    shape = (size, size_y if size_y is not None else size)
    start = time.perf_counter()
    result = anneal(ham, shape, schedule, seed, images)
    seconds = time.perf_counter() - start
    terms = energy_terms(result.spins, ham, images)
    meta = {
        "lam": lam,
        "K": k,
        "D": d,
        "seed": seed,
        "shape": list(shape),
        "images": images,
        "schedule": dataclasses.asdict(schedule),
        "energy": terms.as_dict(),
    }
    if out.suffix == ".png":
        save_texture_png(result.spins, out, f"λ={lam:g} K={k:g} D={d:g} seed={seed}")
    else:
        save_spins(out, result.spins, meta)
    typer.echo(
        f"{out}: {shape[0]}x{shape[1]}, E/N={terms.total / (shape[0] * shape[1]):.5f}, "
        f"mean|Sz|={abs(result.spins[..., 2]).mean():.3f}, {seconds:.2f} s",
        err=True,
    )


@physics_app.command()
def show(
    file: Annotated[Path, typer.Argument(help=".npy or .npz spin array")],
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write")] = None,
) -> None:
    """Render a texture: hue = in-plane angle, lightness = Sz, with a colour-wheel legend."""
    from spinfer.io import load_spins
    from spinfer.render import save_texture_png

    spins = load_spins(file)
    target = out if out is not None else file.with_suffix(".png")
    save_texture_png(spins, target, file.name)
    typer.echo(str(target))


@physics_app.command()
def kshape(
    size: Annotated[int, typer.Option("--size", help="lattice size L")] = 100,
    images: Annotated[int | None, typer.Option("--images", help="dipolar image block M")] = None,
) -> None:
    """Print the lattice's dipolar shape anisotropy [E(+z) - E(+x)] / (N D)."""
    from spinfer.physics.dipolar import dipolar_kernel

    if size < 4:
        raise InputError(f"--size must be >= 4, got {size}")
    typer.echo(f"{dipolar_kernel(size, size, images).kshape():.6f}")


@physics_app.command()
def preview(
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("artifacts/preview"),
    params: ParamsOpt = Path("params.yaml"),
    overrides: SetOpt = None,
) -> None:
    """Anneal and render a handful of textures across the configured ranges."""
    from spinfer.config import load_params
    from spinfer.preview import render_preview

    cfg = load_params(params, overrides or ())
    start = time.perf_counter()
    results = render_preview(cfg, out)
    seconds = time.perf_counter() - start
    typer.echo(f"preview: {len(results)} textures in {seconds:.1f} s -> {out}", err=True)
