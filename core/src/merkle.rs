//! The Merkle tree of RFC 6962 (Certificate Transparency) §2.1: leaf hash SHA-256(0x00 || leaf),
//! node hash SHA-256(0x01 || left || right), the largest power of two smaller than n splitting
//! every subtree. Audit paths prove a leaf is in a tree; consistency proofs prove a tree of m
//! leaves is a prefix of a tree of n.
//!
//! The log's frames are its leaves, in log order (leaf i is frame number i), so an auditor can
//! check that a session's frames are in the log a signed checkpoint commits to, and that the log
//! only ever grew. [`Frontier`] keeps the root of a growing tree in O(log n) hashes; the rest of
//! the module is checked against the published Certificate Transparency vectors.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// A signed tree head's place in a chain of heads (`crate::integrity`): its counter and its
/// hash. Here, below everything that names one, so the index's checkpoint can hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub counter: u64,
    pub hash: Hash,
}

/// The hash of a leaf: SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The root of the tree over `leaves` (already leaf-hashed); SHA-256 of nothing when empty.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first. Enough to
/// append a leaf and to compute the root, in O(log n) hashes and memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// Rebuilds a frontier from its saved parts; `None` unless there is one hash per set bit of
    /// `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Frontier> {
        (hashes.len() == size.count_ones() as usize).then_some(Frontier { size, hashes })
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the perfect subtrees, largest first (one per set bit of the size).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends a leaf (already leaf-hashed).
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.hashes.pop().expect("one hash per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    /// The root of the tree so far; equal to [`root`] over the same leaves.
    pub fn root(&self) -> Hash {
        let mut hashes = self.hashes.iter().rev();
        let Some(last) = hashes.next() else { return Sha256::digest([]).into() };
        hashes.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// The audit path of leaf `index` in the tree over `leaves` (RFC 6962 §2.1.1 PATH), nearest the
/// leaf first. `None` when the index is outside the tree.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    (index < leaves.len()).then(|| {
        let mut proof = Vec::new();
        path(leaves, index, &mut proof);
        proof
    })
}

fn path(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        path(&leaves[..k], index, out);
        out.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], index - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// The roots of the tree's complete, aligned subtrees of `2^bits` leaves and larger, kept as the
/// tree grows: with them an audit path costs O(2^bits · log n) hashes and reads of at most
/// `2^bits` leaves at a time, instead of hashing every leaf of the tree for every proof. Every
/// left subtree in an RFC 6962 tree is such a block, so the cache serves every proof.
#[derive(Clone, Debug)]
pub struct Subtrees {
    bits: u32,
    /// `levels[j][i]`: the root of leaves `[i << (bits + j), (i + 1) << (bits + j))`.
    levels: Vec<Vec<Hash>>,
}

impl Subtrees {
    pub fn new(bits: u32) -> Subtrees {
        Subtrees { bits, levels: vec![Vec::new()] }
    }

    /// Leaves per cached chunk.
    pub fn chunk(&self) -> u64 {
        1 << self.bits
    }

    /// Leaves covered by complete chunks.
    pub fn covered(&self) -> u64 {
        (self.levels[0].len() as u64) << self.bits
    }

    /// Adds the next chunk's leaves (exactly [`Subtrees::chunk`] of them).
    pub fn push_chunk(&mut self, leaves: &[Hash]) {
        debug_assert_eq!(leaves.len() as u64, self.chunk());
        let mut hash = root(leaves);
        let mut j = 0;
        loop {
            self.levels[j].push(hash);
            let n = self.levels[j].len();
            if n % 2 == 1 {
                break;
            }
            hash = node_hash(&self.levels[j][n - 2], &self.levels[j][n - 1]);
            j += 1;
            if self.levels.len() == j {
                self.levels.push(Vec::new());
            }
        }
    }

    /// The root of `[lo, lo + len)` when it is a cached block.
    fn get(&self, lo: u64, len: u64) -> Option<Hash> {
        if !len.is_power_of_two() || len < self.chunk() || !lo.is_multiple_of(len) {
            return None;
        }
        let j = (len.trailing_zeros() - self.bits) as usize;
        self.levels.get(j)?.get((lo / len) as usize).copied()
    }

    /// The root of leaves `[lo, hi)`, reading leaves through `read(lo, hi)` where no cached block
    /// covers them.
    fn mth<E>(
        &self,
        lo: u64,
        hi: u64,
        read: &mut dyn FnMut(u64, u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Hash, E> {
        let n = hi - lo;
        if let Some(h) = self.get(lo, n) {
            return Ok(h);
        }
        if n <= self.chunk() {
            return Ok(root(&read(lo, hi)?));
        }
        let k = split(n as usize) as u64;
        Ok(node_hash(&self.mth(lo, lo + k, read)?, &self.mth(lo + k, hi, read)?))
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves, as
    /// [`inclusion_proof`] gives it, with leaves read through `read(lo, hi)` (leaves `lo..hi`, at
    /// most [`Subtrees::chunk`] at a time) where the cache does not cover them.
    pub fn inclusion_proof<E>(
        &self,
        size: u64,
        index: u64,
        read: &mut dyn FnMut(u64, u64) -> Result<Vec<Hash>, E>,
    ) -> Result<Option<Vec<Hash>>, E> {
        if index >= size {
            return Ok(None);
        }
        let mut siblings = Vec::new();
        let (mut lo, mut hi) = (0, size);
        // Down from the root until the range is one chunk or less, the sibling of each step
        // pushed (they are nearest the root first; the path wants them nearest the leaf first).
        while hi - lo > self.chunk() {
            let k = split((hi - lo) as usize) as u64;
            if index < lo + k {
                siblings.push(self.mth(lo + k, hi, read)?);
                hi = lo + k;
            } else {
                siblings.push(self.mth(lo, lo + k, read)?);
                lo += k;
            }
        }
        let leaves = read(lo, hi)?;
        let mut proof = inclusion_proof(&leaves, (index - lo) as usize).expect("index inside the range");
        proof.extend(siblings.into_iter().rev());
        Ok(Some(proof))
    }
}

/// Checks an audit path: that `leaf` (leaf-hashed) is leaf `index` of a tree of `size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// The consistency proof between the tree of the first `m` leaves and the tree of all of
/// `leaves` (RFC 6962 §2.1.2 PROOF). `None` unless 0 < m <= n.
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Option<Vec<Hash>> {
    (m > 0 && m <= leaves.len()).then(|| {
        let mut proof = Vec::new();
        subproof(m, leaves, true, &mut proof);
        proof
    })
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Checks a consistency proof: that the tree of `m` leaves with root `old` is a prefix of the
/// tree of `n` leaves with root `new` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(m: u64, n: u64, proof: &[Hash], old: &Hash, new: &Hash) -> bool {
    if m == 0 || m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && old == new;
    }
    // When m is a power of two, the old root is itself a node of the new tree: prepend it.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if m.is_power_of_two() {
        path.push(*old);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f_n, mut s_n) = (m - 1, n - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && fr == *old && sr == *new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_subtrees_give_the_same_audit_paths_at_every_size_and_index() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        for bits in [0, 2, 3] {
            let mut cache = Subtrees::new(bits);
            for size in 1..=leaves.len() as u64 {
                while cache.covered() + cache.chunk() <= size {
                    let lo = cache.covered() as usize;
                    cache.push_chunk(&leaves[lo..lo + cache.chunk() as usize]);
                }
                let mut reads = 0u64;
                let mut read = |lo: u64, hi: u64| -> Result<Vec<Hash>, ()> {
                    assert!(hi - lo <= 1 << bits, "read {lo}..{hi} with chunks of {}", 1 << bits);
                    reads += hi - lo;
                    Ok(leaves[lo as usize..hi as usize].to_vec())
                };
                for index in [0, size / 3, size / 2, size - 1] {
                    let cached = cache.inclusion_proof(size, index, &mut read).unwrap();
                    let plain = inclusion_proof(&leaves[..size as usize], index as usize);
                    assert_eq!(cached, plain, "bits {bits}, size {size}, index {index}");
                }
                assert_eq!(cache.inclusion_proof(size, size, &mut read).unwrap(), None);
                // Never the whole tree: a few chunks per level at most.
                let levels = 64 - size.leading_zeros() as u64;
                assert!(reads <= (8 * (levels + 1)) << bits, "size {size}: {reads} leaves read");
            }
        }
    }

    #[test]
    fn frontier_root_matches_the_recursive_root_at_every_size() {
        let leaves: Vec<Hash> = (0u32..130).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut f = Frontier::default();
        assert_eq!(f.root(), root(&[]));
        for (i, leaf) in leaves.iter().enumerate() {
            f.push(*leaf);
            assert_eq!(f.root(), root(&leaves[..=i]), "size {}", i + 1);
            let again = Frontier::from_parts(f.size(), f.hashes().to_vec()).unwrap();
            assert_eq!(again, f);
        }
        assert!(Frontier::from_parts(3, vec![[0; 32]]).is_none());
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn h(s: &str) -> Hash {
        unhex(s).try_into().unwrap()
    }

    /// The Certificate Transparency reference inputs and the roots of their prefixes.
    const CT_LEAVES: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn ct_leaves() -> Vec<Hash> {
        CT_LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect()
    }

    fn many(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&(i as u64).to_le_bytes())).collect()
    }

    #[test]
    fn roots_match_the_certificate_transparency_vectors() {
        let leaves = ct_leaves();
        for size in 0..=8 {
            assert_eq!(root(&leaves[..size]), h(CT_ROOTS[size]), "size {size}");
        }
    }

    #[test]
    fn audit_paths_match_the_certificate_transparency_vectors() {
        let leaves = ct_leaves();
        assert_eq!(
            inclusion_proof(&leaves, 0).unwrap(),
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ]
        );
        assert_eq!(
            inclusion_proof(&leaves, 5).unwrap(),
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ]
        );
        assert_eq!(inclusion_proof(&leaves, 8), None);
    }

    #[test]
    fn every_inclusion_proof_verifies_and_no_other_leaf_or_root_does() {
        for size in 1..=40usize {
            let leaves = many(size);
            let r = root(&leaves);
            for i in 0..size {
                let proof = inclusion_proof(&leaves, i).unwrap();
                assert!(
                    verify_inclusion(&leaves[i], i as u64, size as u64, &proof, &r),
                    "size {size} index {i}"
                );
                let other = leaves[(i + 1) % size];
                if size > 1 {
                    assert!(!verify_inclusion(&other, i as u64, size as u64, &proof, &r));
                }
                let mut bad = r;
                bad[0] ^= 1;
                assert!(!verify_inclusion(&leaves[i], i as u64, size as u64, &proof, &bad));
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_rewritten_history_does_not() {
        for n in 1..=40usize {
            let leaves = many(n);
            let new = root(&leaves);
            for m in 1..=n {
                let old = root(&leaves[..m]);
                let proof = consistency_proof(&leaves, m).unwrap();
                assert!(verify_consistency(m as u64, n as u64, &proof, &old, &new), "m {m} n {n}");
                // A log that changed an old leaf is not consistent with what was signed before.
                let mut forged = leaves.clone();
                forged[m - 1] = leaf_hash(b"rewritten");
                let forged_proof = consistency_proof(&forged, m).unwrap();
                assert!(
                    !verify_consistency(m as u64, n as u64, &forged_proof, &old, &root(&forged)),
                    "m {m} n {n}"
                );
            }
        }
        assert_eq!(consistency_proof(&many(3), 0), None);
    }
}
