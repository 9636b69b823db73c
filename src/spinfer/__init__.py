"""spinfer: magnetic Hamiltonian parameter estimation from spin textures.

Reproduces and extends Kwon et al., "Magnetic Hamiltonian parameter estimation using deep
learning techniques", Science Advances 6, eabb0872 (2020).
"""

__version__ = "0.1.0"
