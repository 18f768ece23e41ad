"""The Merkle tree of the lab's Rekor (lab/services/sigstack/merkle.py), for every size 1..300.

Inclusion proofs are checked with sigstore-python's own verifier; consistency proofs with an
independent verifier written here (it walks RFC 6962's SUBPROOF recursion top-down, where the
module under test implements RFC 9162's iterative algorithm).
"""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace

import pytest
from sigstore._internal.merkle import verify_merkle_inclusion
from sigstore.errors import VerificationError
from sigstore.models import TransparencyLogEntry
from sigstore_models.common import v1 as common_v1
from sigstore_models.rekor import v1 as rekor_v1

from lab.services.sigstack import merkle

MAX_SIZE = 300
REFERENCE_SIZE = 40  # sizes up to this are also compared with the RFC's recursive definitions
DATA = [f"entry {i}".encode() for i in range(MAX_SIZE)]
LEAVES = [merkle.hash_leaf(d) for d in DATA]


def _h(lhs: bytes, rhs: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + lhs + rhs).digest()


@pytest.fixture(scope="module")
def tree() -> merkle.MerkleTree:
    return merkle.MerkleTree(LEAVES)


def _sigstore_inclusion(index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """sigstore-python's verify_merkle_inclusion over a duck-typed entry (fast path)."""
    inner = SimpleNamespace(
        inclusion_proof=SimpleNamespace(
            log_index=index, tree_size=size, hashes=proof, root_hash=root
        ),
        canonicalized_body=DATA[index],
    )
    verify_merkle_inclusion(SimpleNamespace(_inner=inner))  # type: ignore[arg-type]


def _independent_consistency(
    old_size: int, new_size: int, proof: list[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """True if `proof` shows consistency, by the structure of RFC 6962 2.1.2."""
    if old_size == new_size:
        return not proof and old_root == new_root
    items = list(proof)  # bottom-up: the top-level sibling is last

    def walk(m: int, n: int, complete: bool) -> tuple[bytes, bytes]:
        if m == n:
            node = old_root if complete else items.pop()
            return node, node
        k = 1
        while k * 2 < n:
            k *= 2
        sibling = items.pop()
        if m <= k:
            old, new = walk(m, k, complete)
            return old, _h(new, sibling)
        old, new = walk(m - k, n - k, False)
        return _h(sibling, old), _h(sibling, new)

    try:
        old, new = walk(old_size, new_size, True)
    except IndexError:
        return False
    return not items and old == old_root and new == new_root


def test_roots_match_the_rfc_definition_at_every_size() -> None:
    grown = merkle.MerkleTree()
    assert grown.root() == hashlib.sha256(b"").digest()
    for n in range(1, MAX_SIZE + 1):
        assert grown.root_after(LEAVES[n - 1 : n]) == merkle.mth(LEAVES[:n])
        grown.append(LEAVES[n - 1])
        assert grown.size == n
        assert grown.root() == merkle.mth(LEAVES[:n])


def test_root_after_several_leaves_does_not_change_the_tree(tree: merkle.MerkleTree) -> None:
    small = merkle.MerkleTree(LEAVES[:37])
    assert small.root_after(LEAVES[37:200]) == tree.root(200)
    assert small.size == 37
    assert merkle.MerkleTree().root_after([]) == merkle.EMPTY_ROOT


def test_inclusion_proofs_verify_with_sigstore_for_every_size_and_index(
    tree: merkle.MerkleTree,
) -> None:
    for n in range(1, MAX_SIZE + 1):
        root = tree.root(n)
        for i in range(n):
            proof = tree.inclusion_proof(i, n)
            _sigstore_inclusion(i, n, proof, root)
            merkle.verify_inclusion(LEAVES[i], i, n, proof, root)
            if n <= REFERENCE_SIZE:
                assert proof == merkle.path(i, LEAVES[:n])


def test_sigstore_transparency_log_entry_accepts_a_proof(tree: merkle.MerkleTree) -> None:
    """The full pydantic entry type of sigstore-python, not a stand-in."""
    for index, size in [(0, 1), (5, 6), (100, 257), (299, 300), (128, 300)]:
        proof = tree.inclusion_proof(index, size)
        inner = rekor_v1.TransparencyLogEntry(
            log_index=str(index),  # type: ignore[arg-type]
            log_id=common_v1.LogId(key_id=base64.b64encode(b"\x00" * 32)),
            kind_version=rekor_v1.KindVersion(kind="hashedrekord", version="0.0.2"),
            integrated_time="0",  # type: ignore[arg-type]
            inclusion_proof=rekor_v1.InclusionProof(
                log_index=str(index),  # type: ignore[arg-type]
                root_hash=base64.b64encode(tree.root(size)),
                tree_size=str(size),  # type: ignore[arg-type]
                hashes=[base64.b64encode(h) for h in proof],
                checkpoint=rekor_v1.Checkpoint(envelope="unused\n"),
            ),
            canonicalized_body=base64.b64encode(DATA[index]),
        )
        verify_merkle_inclusion(TransparencyLogEntry(inner))


def test_tampered_inclusion_proofs_fail_in_sigstore(tree: merkle.MerkleTree) -> None:
    size, index = 300, 77
    proof = tree.inclusion_proof(index, size)
    root = tree.root(size)
    bad_hash = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    for bad in (bad_hash, proof[:-1], [*proof, proof[0]]):
        with pytest.raises(VerificationError):
            _sigstore_inclusion(index, size, bad, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(LEAVES[index], index, size, bad, root)
    with pytest.raises(VerificationError):
        _sigstore_inclusion(index + 1, size, proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(LEAVES[index], index, size, proof, tree.root(size - 1))


def test_consistency_proofs_for_every_pair_of_sizes(tree: merkle.MerkleTree) -> None:
    roots = [tree.root(n) for n in range(MAX_SIZE + 1)]
    for n in range(1, MAX_SIZE + 1):
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert _independent_consistency(m, n, proof, roots[m], roots[n]), (m, n)
            merkle.verify_consistency(m, n, roots[m], roots[n], proof)
            if n <= REFERENCE_SIZE and m < n:
                assert proof == merkle.subproof(m, LEAVES[:n])


def test_inconsistent_trees_are_detected(tree: merkle.MerkleTree) -> None:
    forked = merkle.MerkleTree([*LEAVES[:100], merkle.hash_leaf(b"forged"), *LEAVES[101:]])
    for m, n in [(101, 300), (150, 300), (128, 256), (101, 102)]:
        proof = forked.consistency_proof(m, n)
        # the fork's proof against the honest old root fails, both ways of checking
        assert not _independent_consistency(m, n, proof, tree.root(m), forked.root(n))
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(m, n, tree.root(m), forked.root(n), proof)
    proof = tree.consistency_proof(10, 20)
    for bad in (proof[:-1], [*proof, proof[0]], [proof[1], proof[0], *proof[2:]]):
        assert not _independent_consistency(10, 20, bad, tree.root(10), tree.root(20))
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(10, 20, tree.root(10), tree.root(20), bad)


def test_out_of_range_requests_raise(tree: merkle.MerkleTree) -> None:
    with pytest.raises(merkle.ProofError):
        tree.inclusion_proof(300, 300)
    with pytest.raises(merkle.ProofError):
        tree.inclusion_proof(0, 301)
    with pytest.raises(merkle.ProofError):
        tree.consistency_proof(5, 301)
    with pytest.raises(merkle.ProofError):
        tree.consistency_proof(6, 5)
    assert tree.consistency_proof(0, 5) == []
    assert tree.consistency_proof(5, 5) == []
    with pytest.raises(ValueError):
        merkle.MerkleTree().append(b"short")


def test_known_rfc6962_roots() -> None:
    """Roots of the RFC 6962 test leaves, as published with certificate-transparency-go."""
    leaves = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ]
    expected = {
        1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    }
    tree = merkle.MerkleTree(merkle.hash_leaf(d) for d in leaves)
    for size, root in expected.items():
        assert tree.root(size).hex() == root
