"""Every symmetry used for augmentation, proven by the Hamiltonian: each energy term
unchanged, or (lambda-reversing operations) only the DMI term reversed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinfer.config import OPERATIONS
from spinfer.data.symmetry import (
    _BITS,
    N_ELEMENTS,
    Augmenter,
    apply_symmetry,
    flip_lambda,
    group_elements,
    lambda_sign,
)
from spinfer.data.targets import TargetScaler
from spinfer.physics.energy import Hamiltonian, energy_terms
from spinfer.train.loop import lambda_offset
from tests.conftest import smooth_texture


def _as_image(spins: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(spins.transpose(2, 0, 1).copy())


def _as_spins(x: torch.Tensor) -> np.ndarray:
    return x.numpy().transpose(1, 2, 0).copy()


HAM = Hamiltonian(dmi=0.3, anisotropy=0.4, dipolar=0.1)


@pytest.mark.parametrize("element", range(N_ELEMENTS))
def test_each_element_preserves_every_term_or_reverses_only_the_dmi(element):
    """Label-preserving elements keep every term; lambda-reversing ones (in-plane reversal)
    reverse E_DMI and keep exchange, dipolar and anisotropy."""
    spins = smooth_texture(element)
    before = energy_terms(spins, HAM).as_dict()
    after = energy_terms(_as_spins(apply_symmetry(_as_image(spins), element)), HAM).as_dict()
    assert abs(before["dmi"]) > 1e-2 and abs(before["dipolar"]) > 1e-3  # a real test
    sign = lambda_sign(element)
    for term, value in before.items():
        if term == "total":
            continue
        expected = sign * value if term == "dmi" else value
        assert after[term] == pytest.approx(expected, rel=1e-9, abs=1e-9), term


@pytest.mark.parametrize("operation", [o for o in OPERATIONS if o != "translate"])
def test_every_named_operation_is_proven(operation):
    """The generators by name: each element they generate passes the energy test, and the
    label map is right: E(g S; lambda') = E(S; lambda) term by term."""
    spins = smooth_texture(7)
    for element in group_elements([operation]):
        moved = _as_spins(apply_symmetry(_as_image(spins), element))
        flipped = Hamiltonian(dmi=lambda_sign(element) * HAM.dmi, anisotropy=0.4, dipolar=0.1)
        before = energy_terms(spins, HAM).as_dict()
        after = energy_terms(moved, flipped).as_dict()
        for term, value in before.items():
            assert after[term] == pytest.approx(value, rel=1e-9, abs=1e-9), (operation, term)


def test_inplane_reversal_is_the_only_label_changing_operation():
    assert [o for o in OPERATIONS if any(lambda_sign(e) < 0 for e in group_elements([o]))] == [
        "inplane_reversal"
    ]
    assert group_elements([]) == (0,)
    assert len(group_elements(["rotate", "mirror"])) == 8  # D4
    assert len(group_elements(OPERATIONS)) == N_ELEMENTS


def test_translations_preserve_every_term():
    spins = smooth_texture(5)
    before = energy_terms(spins, HAM).as_dict()
    after = energy_terms(np.roll(spins, (3, -5), axis=(0, 1)), HAM).as_dict()
    for term, value in before.items():
        assert after[term] == pytest.approx(value, rel=1e-9, abs=1e-9), term


def test_augmenter_labels_follow_the_texture():
    """An augmented texture with its augmented label has the energies of the original with
    its label, for every image of a batch (labels as the training targets, normalized)."""
    scaler = TargetScaler((-0.39, 0.02, 0.05), (0.39, 1.1, 0.13))
    params = np.array([[0.3, 0.4, 0.1], [-0.12, 0.9, 0.07], [0.0, 0.5, 0.12]])
    x = torch.stack([_as_image(smooth_texture(s)) for s in range(3)])
    y = torch.from_numpy(scaler.normalize(params))
    aug = Augmenter(OPERATIONS, lambda_offset(scaler))
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(6):
        xa, ya = aug(x, y, rng)
        labels = scaler.denormalize(ya.numpy())
        for i in range(3):
            np.testing.assert_allclose(labels[i, 1:], params[i, 1:])
            assert abs(labels[i, 0]) == pytest.approx(abs(params[i, 0]), abs=1e-12)
            flips += labels[i, 0] != params[i, 0]
            lam, k, d = params[i]
            e0 = energy_terms(_as_spins(x[i]), Hamiltonian(dmi=lam, anisotropy=k, dipolar=d))
            h = Hamiltonian(dmi=labels[i, 0], anisotropy=k, dipolar=d)
            e1 = energy_terms(_as_spins(xa[i]), h)
            assert e1.total == pytest.approx(e0.total, rel=1e-9)
            assert e1.dmi == pytest.approx(e0.dmi, rel=1e-9, abs=1e-12)
    assert flips > 0  # the label-changing half of the group was drawn


def test_the_dmi_sign_would_be_caught():
    """A wrong spin action (rotating positions but not the in-plane spin) changes E_DMI."""
    spins = smooth_texture(1)
    x = _as_image(spins)
    wrong = torch.rot90(x, 1, dims=(-2, -1))
    e0 = energy_terms(spins, HAM).dmi
    assert abs(energy_terms(_as_spins(wrong), HAM).dmi - e0) > 1e-3 * abs(e0)


def test_elements_are_distinct_and_augmentation_keeps_unit_length():
    x = _as_image(smooth_texture(3))
    images = {tuple(apply_symmetry(x, e).flatten().tolist()) for e in range(N_ELEMENTS)}
    assert len(images) == N_ELEMENTS
    invariant = Augmenter(["rotate", "mirror", "time_reversal", "translate"])
    (y,), _ = invariant(x[None], torch.zeros(1, 3), np.random.default_rng(0))
    torch.testing.assert_close((y**2).sum(0), torch.ones(12, 12, dtype=y.dtype))
    assert energy_terms(_as_spins(y), HAM).total == pytest.approx(
        energy_terms(_as_spins(x), HAM).total, rel=1e-9
    )


def test_batched_images_transform_like_single_ones():
    batch = torch.stack([_as_image(smooth_texture(s)) for s in range(3)])
    for e in (1, 6, 13):
        out = apply_symmetry(batch, e)
        for i in range(3):
            torch.testing.assert_close(out[i], apply_symmetry(batch[i], e))


def test_every_named_operation_has_its_bits_and_no_other():
    """config.OPERATIONS names what data.symmetry implements: the point operations' bits
    and translation (augmentation only)."""
    assert set(OPERATIONS) == {*_BITS, "translate"}


def test_the_batched_augmenter_is_the_per_image_definition():
    """One operation per element drawn and a gathered roll give, bit for bit, each image's
    own element and torch.roll, from the same draws (elements and shifts alike)."""
    x = torch.stack([_as_image(smooth_texture(s)) for s in range(9)]).float()
    y = torch.rand(9, 3)
    scaler = TargetScaler((-0.39, 0.02, 0.05), (0.39, 1.1, 0.13))
    aug = Augmenter(OPERATIONS, lambda_offset(scaler))
    xa, ya = aug(x, y, np.random.default_rng(7))
    elements, shifts = aug.draw(9, (12, 12), np.random.default_rng(7))
    assert len(set(elements.tolist())) > 3 and shifts.any()
    for i, (e, s) in enumerate(zip(elements.tolist(), shifts.tolist(), strict=True)):
        want = torch.roll(apply_symmetry(x[i], e), shifts=tuple(s), dims=(-2, -1))
        assert torch.equal(xa[i], want)
        label = flip_lambda(y[i], aug.offset) if lambda_sign(e) < 0 else y[i]
        assert torch.equal(ya[i], label)
