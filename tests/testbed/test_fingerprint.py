"""Prefix fingerprints: equal within the tolerance, apart beyond it, key biases left out."""

import math

from studylib.testbed import fingerprint

FP = {"norms": {"a.weight": 2.0, "b.k_proj.bias": 1.0, "c.bias": 0.5},
      "update_norms": {"a.weight": 0.1, "b.k_proj.bias": 0.1, "c.bias": 0.0}}


def changed(part: str, name: str, value: float) -> dict:
    return {**FP, part: {**FP[part], name: value}}


def test_equal_fingerprints_match():
    assert fingerprint.mismatches(FP, FP) == {}
    assert max(fingerprint.differences(FP, FP).values()) == 0.0


def test_a_change_beyond_the_tolerance_is_named():
    tol = fingerprint.TOLERANCE
    near = changed("update_norms", "a.weight", 0.1 * (1 + tol / 2))
    far = changed("update_norms", "a.weight", 0.1 * (1 + 2 * tol))
    assert fingerprint.mismatches(near, FP) == {}
    assert list(fingerprint.mismatches(far, FP)) == ["update_norms/a.weight"]


def test_a_missing_tensor_never_matches():
    missing = {**FP, "norms": {k: v for k, v in FP["norms"].items() if k != "c.bias"}}
    assert fingerprint.mismatches(missing, FP) == {"norms/c.bias": math.inf}


def test_key_biases_are_rounding_noise_and_left_out():
    noisy = changed("norms", "b.k_proj.bias", 1.5)
    assert fingerprint.mismatches(noisy, FP) == {}


def test_a_tensor_that_did_not_move_is_compared_absolutely():
    moved = changed("update_norms", "c.bias", fingerprint.UPDATE_FLOOR * fingerprint.TOLERANCE / 2)
    assert fingerprint.mismatches(moved, FP) == {}
    assert fingerprint.mismatches(changed("update_norms", "c.bias", 1e-3), FP)
