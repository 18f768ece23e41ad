"""RFC 6962 / RFC 9162 Merkle trees: hashing, roots, inclusion and consistency proofs.

Pure functions and one in-memory tree, no I/O. Leaves are hashed as SHA256(0x00 || data) and
interior nodes as SHA256(0x01 || left || right); the tree of n leaves splits at the largest
power of two smaller than n (RFC 6962 section 2.1).

`MerkleTree` keeps every complete, aligned subtree hash (level k holds the hashes of the
subtrees of 2**k leaves), so an append costs O(1) amortised hashes and a root or proof for any
size costs O(log^2 n). It is append-only: hashes already stored never change, so a reader
that fixes a size first can compute over it while a single writer appends.

The reference functions (`mth`, `path`, `subproof`) work on a plain list of leaf hashes and
follow the RFC's recursive definitions word for word; tests compare the tree against them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof was asked for sizes or an index the tree does not have, or does not verify."""


def hash_leaf(data: bytes) -> bytes:
    """The RFC 6962 leaf hash of an entry's bytes."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than `n` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# -- reference definitions over a list of leaf hashes ---------------------------------------


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 2.1, over leaf hashes."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = split_point(n)
    return hash_children(mth(leaves[:k]), mth(leaves[k:]))


def path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 2.1.1: the audit path of leaf `index`, bottom first."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ProofError(f"index {index} is outside a tree of size {n}")
    if n == 1:
        return []
    k = split_point(n)
    if index < k:
        return [*path(index, leaves[:k]), mth(leaves[k:])]
    return [*path(index - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: Sequence[bytes], complete: bool = True) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 6962 2.1.2; PROOF(m, D[n]) is `subproof(m, leaves)`."""
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = split_point(n)
    if m <= k:
        return [*subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


# -- verification (RFC 9162 2.1.3.2 and 2.1.4.2) --------------------------------------------


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that an inclusion proof of `leaf_hash` at `index` in a tree of `size` implies."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise `ProofError` unless `proof` shows `leaf_hash` at `index` under `root`."""
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise ProofError("inclusion proof does not lead to the root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise `ProofError` unless `proof` shows the tree of `old_size` is a prefix of the new."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"sizes {old_size} and {new_size} are not in order")
    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("equal sizes with different roots")
        return
    if old_size == 0:
        if proof:
            raise ProofError("consistency proof from an empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    items = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        items.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = items[0]
    for c in items[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")


# -- proofs over any source of complete-subtree hashes (a tree in memory, tiles) -----------

NodeReader = Callable[[int, int], bytes]
"""(level, index) -> the hash of the complete subtree over leaves index*2**level onwards."""


def mth_from(node: NodeReader, lo: int, hi: int) -> bytes:
    """MTH of leaves [lo, hi), with lo aligned as in the RFC's recursion, from `node`."""
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and lo % n == 0:
        return node(n.bit_length() - 1, lo // n)
    k = split_point(n)
    return hash_children(mth_from(node, lo, lo + k), mth_from(node, lo + k, hi))


def inclusion_proof_from(node: NodeReader, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) from `node`: the audit path, bottom first."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:  # top-down; the RFC's order is bottom-up, so reverse at the end
        k = split_point(hi - lo)
        if index < lo + k:
            proof.append(mth_from(node, lo + k, hi))
            hi = lo + k
        else:
            proof.append(mth_from(node, lo, lo + k))
            lo += k
    proof.reverse()
    return proof


def consistency_proof_from(node: NodeReader, old_size: int, size: int) -> list[bytes]:
    """PROOF(old_size, D[size]) from `node`: empty when the sizes are equal or old_size is 0."""
    if not 0 <= old_size <= size:
        raise ProofError(f"old size {old_size} is not between 0 and {size}")
    if old_size in (0, size):
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, size, old_size, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            proof.append(mth_from(node, lo + k, hi))
            hi = lo + k
        else:
            proof.append(mth_from(node, lo, lo + k))
            lo += k
            m -= k
            complete = False
    if not complete:
        proof.append(mth_from(node, lo, hi))
    proof.reverse()
    return proof


# -- the incremental tree -------------------------------------------------------------------


class MerkleTree:
    """An append-only Merkle tree over leaf hashes with cached complete subtrees.

    Example:
        tree = MerkleTree()
        index = tree.append(hash_leaf(b"entry"))
        proof = tree.inclusion_proof(index)
        verify_inclusion(tree.leaf(index), index, tree.size, proof, tree.root())
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        """The number of leaves."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Add one leaf hash; returns its index. Not safe to call from two threads at once."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError("a leaf hash has 32 bytes")
        index = self._size
        self._levels[0] += leaf_hash
        node, level = index, 0
        while node & 1:  # a right child completes its parent
            left = self._node(level, node - 1)
            right = self._node(level, node)
            level += 1
            if level == len(self._levels):
                self._levels.append(bytearray())
            self._levels[level] += hash_children(left, right)
            node >>= 1
        self._size = index + 1  # published last: readers see only complete subtrees
        return index

    def leaf(self, index: int) -> bytes:
        """The leaf hash at `index`."""
        if not 0 <= index < self._size:
            raise ProofError(f"index {index} is outside a tree of size {self._size}")
        return self._node(0, index)

    def node(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree of 2**level leaves starting at leaf index*2**level.

        Raises:
            ProofError: the tree does not have that subtree complete.
        """
        if level < 0 or index < 0 or (index + 1) << level > self._size:
            raise ProofError(f"no complete subtree ({level}, {index}) in a tree of {self._size}")
        return self._node(level, index)

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the first `size` leaves (default: all)."""
        n = self._check_size(size)
        return self._mth(0, n) if n else EMPTY_ROOT

    def root_after(self, extra: Sequence[bytes]) -> bytes:
        """The root the tree would have with `extra` leaf hashes appended; changes nothing."""
        stack: list[tuple[int, bytes]] = []  # perfect subtrees, largest (leftmost) first
        n, pos = self._size, 0
        for level in reversed(range(n.bit_length())):
            if n >> level & 1:
                stack.append((level, self._node(level, pos >> level)))
                pos += 1 << level
        for leaf in extra:
            level, node = 0, leaf
            while stack and stack[-1][0] == level:
                node = hash_children(stack.pop()[1], node)
                level += 1
            stack.append((level, node))
        if not stack:
            return EMPTY_ROOT
        root = stack.pop()[1]
        while stack:
            root = hash_children(stack.pop()[1], root)
        return root

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf `index` in the tree of the first `size` leaves."""
        return inclusion_proof_from(self._node, index, self._check_size(size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]): empty when the sizes are equal or old_size is 0."""
        return consistency_proof_from(self._node, old_size, self._check_size(new_size))

    def _check_size(self, size: int | None) -> int:
        current = self._size
        if size is None:
            return current
        if not 0 <= size <= current:
            raise ProofError(f"size {size} is beyond the tree size {current}")
        return size

    def _node(self, level: int, index: int) -> bytes:
        start = index * HASH_SIZE
        return bytes(self._levels[level][start : start + HASH_SIZE])

    def _mth(self, lo: int, hi: int) -> bytes:
        """MTH of leaves [lo, hi); lo is aligned as in the RFC's recursion."""
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self._node(n.bit_length() - 1, lo // n)
        k = split_point(n)
        return hash_children(self._mth(lo, lo + k), self._mth(lo + k, hi))
