"""Physics core: Hamiltonian terms, FFT dipolar field, Metropolis annealing."""

from spinfer.physics.anneal import AnnealResult, Schedule, anneal
from spinfer.physics.dipolar import DipolarKernel, dipolar_kernel
from spinfer.physics.energy import EnergyTerms, Hamiltonian, effective_field, energy_terms

__all__ = [
    "AnnealResult",
    "DipolarKernel",
    "EnergyTerms",
    "Hamiltonian",
    "Schedule",
    "anneal",
    "dipolar_kernel",
    "effective_field",
    "energy_terms",
]
