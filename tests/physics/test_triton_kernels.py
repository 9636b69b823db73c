"""The fused Triton half-sweep against the eager torch path, operation for operation.

On the CPU the kernels run in Triton's interpreter (numpy), which is how they are compared
with the eager path bit for bit; their compiled form (PTX for a Hopper GPU, built here
without one) is checked for the one thing the interpreter cannot show: that no operation is
contracted or approximated, so that CUDA rounds them as the eager kernels do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

from spinfer.config import ENGINE_DEVICES, ENGINE_KERNELS
from spinfer.errors import InputError
from spinfer.physics import torch_engine as te
from spinfer.physics.anneal import Schedule
from spinfer.physics.energy import Hamiltonian

triton = pytest.importorskip("triton")

CPU = torch.device("cpu")
HAMS = [
    Hamiltonian(0.3, 0.9, 0.13),
    Hamiltonian(-0.25, 0.2, 0.05),
    Hamiltonian(0.0, 1.2, 0.1),
    Hamiltonian(0.1, 0.0, 0.0),
]
SEEDS = [5, 6, 7, 8]

INTERPRETED = textwrap.dedent(
    """
    import warnings
    import numpy as np
    from spinfer.physics import torch_engine as te
    from spinfer.physics.anneal import Schedule
    from spinfer.physics.energy import Hamiltonian

    warnings.simplefilter("error")  # a kernel that failed to build would warn
    hams = [Hamiltonian(*h) for h in {hams}]
    seeds = {seeds}
    # periodic and block (padded, odd-sized) dipolar kernels; uphill moves, adaptive cones,
    # protocols of different lengths in one batch, relaxation and L-BFGS after
    for images, shape in ((None, (12, 12)), (2, (9, 14))):
        sch = Schedule(sweeps=30, relax_sweeps=4, minimize_steps=10, randomize=True,
                       minimizer="lbfgs")
        eager = te.anneal_batch(hams, shape, sch, seeds, images, "cpu", kernels="torch")
        fused = te.anneal_batch(hams, shape, sch, seeds, images, "cpu", kernels="triton",
                                batch=3)
        for e, f in zip(eager, fused, strict=True):
            assert np.array_equal(e.spins, f.spins), (images, shape)
            assert e.acceptance == f.acceptance
    print("identical")
    """
).format(hams=[(h.dmi, h.anisotropy, h.dipolar) for h in HAMS], seeds=SEEDS)


def test_fused_kernels_anneal_the_eager_paths_textures_bit_for_bit():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run(
        [sys.executable, "-c", INTERPRETED], env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "identical"


def _compile(kernel, signature: dict[str, str], fusion: bool) -> str:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(kernel, {**signature, "BLOCK": "constexpr"}, constexprs={"BLOCK": 256})
    compiled = triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": fusion}
    )
    return compiled.asm["ptx"]


def _signatures() -> dict[str, tuple]:
    from spinfer.physics import triton_kernels as tk

    pointers = dict.fromkeys(
        ("spins", "dip", "exchange", "dmi", "anisotropy", "dipolar", "beta", "cone"), "*fp32"
    )
    pointers |= {"sites": "*i64", "table": "*i64", "k1": "*i64", "accepted": "*i32"}
    sweep = {f"{name}_ptr": t for name, t in pointers.items()}
    ints = "s_b s_c s_x s_y f_b f_c f_x f_y table_b beta_b lx ly m draw"
    sweep |= dict.fromkeys(ints.split(), "i32")
    sweep |= dict.fromkeys(("gxx", "gyy", "gxy2", "gzz"), "fp32")
    spectrum = dict.fromkeys(("sk_ptr", "g_ptr", "out_ptr"), "*fp32")
    spectrum |= dict.fromkeys(("s_b", "s_c", "g_c", "o_b", "o_c", "modes"), "i32")
    return {"sweep": (tk._metropolis_kernel, sweep), "spectrum": (tk._spectrum_kernel, spectrum)}


@pytest.mark.parametrize("name", ["sweep", "spectrum"])
def test_compiled_kernels_round_every_float_operation_as_eager_cuda_does(name):
    """No fused multiply-add, and division and square root correctly rounded (``.rn``), as
    in PyTorch's own CUDA kernels; with contraction allowed the check does see it."""
    kernel, signature = _signatures()[name]
    ptx = _compile(kernel, signature, fusion=False)
    assert "fma." not in ptx
    assert set(re.findall(r"\bdiv\.\w+\.f32", ptx)) <= {"div.rn.f32"}
    assert set(re.findall(r"\bsqrt\.\w+\.f32", ptx)) <= {"sqrt.rn.f32"}
    if name == "sweep":
        assert "div.rn.f32" in ptx and "sqrt.rn.f32" in ptx
    assert "fma." in _compile(kernel, signature, fusion=True)


def test_kernels_resolve_to_what_the_host_runs(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert te.resolve_kernels("auto", CPU) == "torch"
    assert te.resolve_kernels("torch", CPU) == "torch"
    with pytest.raises(InputError, match=r"triton was asked for but .* run on CUDA"):
        te.resolve_kernels("triton", CPU)
    with pytest.raises(InputError, match="unknown kernels 'fast'"):
        te.resolve_kernels("fast", CPU)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert te.resolve_kernels("auto", CPU) == "triton"
    assert ENGINE_KERNELS == te.KERNELS and ENGINE_DEVICES == te.DEVICES


def test_kernels_that_do_not_build_fall_back_to_the_eager_path_with_a_warning(monkeypatch):
    """A host where the compiled kernels cannot launch (here: the CPU, no GPU driver; elsewhere
    no C compiler or an unsupported GPU) still anneals, the same textures, and says why it is
    slower."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    sch = Schedule(sweeps=6, relax_sweeps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = te._anneal_group(HAMS[:2], (8, 8), [sch] * 2, SEEDS[:2], None, CPU, None,
                                    "triton")  # fmt: skip
    (warning,) = caught
    message = str(warning.message)
    assert message.startswith("the Triton kernels did not build on cpu (") and "\n" not in message
    eager = te._anneal_group(HAMS[:2], (8, 8), [sch] * 2, SEEDS[:2], None, CPU, None, "torch")
    for f, e in zip(fallback, eager, strict=True):
        np.testing.assert_array_equal(f.spins, e.spins)
