//! Block format version 2: every column coded by one rANS coder driven by context models, so
//! the bits go where the information is (docs/FORMAT.md, "Block, version 2", is the bit map).
//!
//! Each value becomes a *token* (its own value when small, otherwise its bit length and top bits,
//! the rest written raw to the extras stream) coded under a *context*: the previous kind for a
//! kind, the previous time delta for a time delta, the previous velocity's magnitude for a
//! pointer's change in velocity. A kind byte is its own symbol (all 256 fit the alphabet, so it
//! has no extra bits). The frequency tables are stored in the block, so a block still
//! decodes on its own and in parallel with its neighbours.

mod ans;
mod bits;
mod decode;
mod dictionary;
mod encode;
mod freqs;
mod layout;

pub(crate) use decode::{Decoder, read_header};
pub use encode::Breakdown;
pub(crate) use encode::Encoder;

/// The version byte of the layout written: version 3.
pub(crate) const VERSION: u8 = 3;
/// The first entropy-coded layout, still read: version 3 differs only in its tables' coding and
/// its contexts (docs/FORMAT.md, "Block, version 2").
pub(crate) const VERSION_2: u8 = 2;

/// Symbols every table is over: 64 direct values and 4 tokens per bit length from 7 to 64.
pub(super) const ALPHABET: usize = 296;
/// Values below this are their own token.
const DIRECT: u64 = 64;
/// log2 of [`DIRECT`].
const DIRECT_BITS: u32 = 6;

/// The token of `v` and how many extra bits follow it.
#[inline(always)]
pub(super) fn token(v: u64) -> (u16, u32) {
    if v < DIRECT {
        return (v as u16, 0);
    }
    let n = 63 - v.leading_zeros();
    let top = (v >> (n - 2)) & 3;
    ((DIRECT as u32 + 4 * (n - DIRECT_BITS) + top as u32) as u16, n - 2)
}

/// For a token of at least [`DIRECT`]: the bit length less one, and the two bits below the
/// leading one.
#[inline(always)]
pub(super) fn token_shape(t: u16) -> (u32, u64) {
    let t = u32::from(t) - DIRECT as u32;
    (DIRECT_BITS + t / 4, u64::from(t & 3))
}

// Contexts. Each has its own frequency table; the encoder gathers counts by *fine* context, then
// merges the pointer's fine contexts into the block's chosen number of buckets.

/// Kind codes (the kind byte's low nibble, 0..=9).
pub(super) const KIND_CODES: usize = 10;
/// Kind byte, by the previous event's kind code (0 before the first event) and whether a button
/// or key is held (a press is followed by its release; a drag by no new press).
pub(super) const KIND_CONTEXTS: usize = 2 * KIND_CODES;
/// Time delta: contexts 0..=4 by how far the previous clocked delta's token was from the block's
/// most common one; 5 for a pointer button's press or release, which comes when the hand does,
/// not on the device's sampling clock (and leaves the clocked context as it was).
pub(super) const TIME_CONTEXTS: usize = 6;
/// The time context of a pointer button event.
pub(super) const TIME_BUTTON: usize = 5;
/// The ways a block may group its time contexts, one table per group: all in one; below, at and
/// above the mode, and buttons; every context its own; clocked and buttons.
pub(super) const TIME_GROUPINGS: [[u8; TIME_CONTEXTS]; 4] =
    [[0, 0, 0, 0, 0, 0], [0, 0, 1, 2, 2, 3], [0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 1]];
/// Groups in each time grouping.
pub(super) const TIME_GROUPS: [usize; 4] = [1, 4, 6, 2];

/// Whether a kind code is a pointer button's press or release (time context [`TIME_BUTTON`]).
#[inline(always)]
pub(super) fn is_button(kind: u8) -> bool {
    kind == super::KIND_DOWN || kind == super::KIND_UP
}
/// The time context of the second event (the first delta): as after a delta of the mode.
pub(super) const TIME_CONTEXT_FIRST: usize = 2;
/// Pointer second difference: fine contexts by the bit length of the axis's previous velocity
/// (zigzag, capped) ...
pub(super) const POINTER_V: usize = 16;
/// ... and the class of the axis's previous second difference (motion comes in bursts: a large
/// change in velocity is followed by more): bit length (zigzag) at most 1, 2, 3, or more.
pub(super) const POINTER_R: usize = 4;
pub(super) const POINTER_FINE: usize = POINTER_V * POINTER_R;
/// The ways a block may group the classes of the previous second difference (by class), one
/// group of tables each: all in one; {0, 1}, {2, 3}; {0}, {1, 2}, {3}.
pub(super) const POINTER_GROUPINGS: [[u8; POINTER_R]; 3] = [[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 1, 2]];
/// Groups in each grouping.
pub(super) const POINTER_GROUPS: [usize; 3] = [1, 2, 3];
/// The velocity bucket counts a group may choose from: bucket `b` holds the velocities of bit
/// length `b`, the last one every longer length too.
pub(super) const POINTER_BUCKETS: [usize; 8] = [1, 2, 3, 4, 6, 8, 12, 16];
/// String references, by field: a key's code on key down and on key up, its text on key down
/// and key up, a text event's text, a focus's app and title, a marker's label.
pub(super) const REF_CONTEXTS: usize = 8;

pub(super) const FINE_KIND: usize = 0;
pub(super) const FINE_TIME: usize = FINE_KIND + KIND_CONTEXTS;
pub(super) const FINE_POINTER: usize = FINE_TIME + TIME_CONTEXTS;
pub(super) const FINE_INTS: usize = FINE_POINTER + POINTER_FINE;
pub(super) const FINE_REFS: usize = FINE_INTS + 1;
pub(super) const FINE_CONTEXTS: usize = FINE_REFS + REF_CONTEXTS;

pub(super) const REF_CODE_DOWN: usize = 0;
pub(super) const REF_CODE_UP: usize = 1;
pub(super) const REF_TEXT_DOWN: usize = 2;
pub(super) const REF_TEXT_UP: usize = 3;
pub(super) const REF_TEXT: usize = 4;
pub(super) const REF_APP: usize = 5;
pub(super) const REF_TITLE: usize = 6;
pub(super) const REF_LABEL: usize = 7;

/// Which recency list a reference context uses: codes, texts, apps, titles, labels.
pub(super) const REF_LIST: [usize; REF_CONTEXTS] = [0, 0, 1, 1, 1, 2, 3, 4];
pub(super) const REF_LISTS: usize = 5;

/// Presses not yet released after an event of kind code `kind`, from `held` before it.
#[inline(always)]
pub(super) fn held_after(held: u32, kind: u8) -> u32 {
    use super::{KIND_DOWN, KIND_KEY_DOWN, KIND_KEY_UP, KIND_UP};
    match kind {
        KIND_DOWN | KIND_KEY_DOWN => held.saturating_add(1),
        KIND_UP | KIND_KEY_UP => held.saturating_sub(1),
        _ => held,
    }
}

/// The kind context after an event of kind code `kind`, with `held` presses not yet released.
#[inline(always)]
pub(super) fn kind_context(kind: u8, held: u32) -> usize {
    usize::from(kind) + if held > 0 { KIND_CODES } else { 0 }
}

/// Version 2's time context after a delta whose token is `t`: 0 at the mode, 1 below, 2 above.
pub(super) fn time_context_v2(t: u16, mode: u16) -> usize {
    match t.cmp(&mode) {
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Less => 1,
        std::cmp::Ordering::Greater => 2,
    }
}

/// The time context after a delta whose token is `t`, given the block's most common token.
#[inline(always)]
pub(super) fn time_context(t: u16, mode: u16) -> usize {
    // How far the previous delta was from the mode, in ticks (a token below 64 is the zigzag of
    // the delta, two per tick), -2..=2, plus 2: a clock that alternates between neighbouring
    // ticks (16 and 17 ms for 60 Hz) tells the next delta from the last.
    (((i32::from(t) - i32::from(mode)) >> 1).clamp(-2, 2) + 2) as usize
}

/// The velocity class of an axis whose previous velocity is `v`.
#[inline(always)]
pub(super) fn pointer_v(v: i64) -> usize {
    // The change is coded along the motion, so only the speed matters, not the direction.
    ((64 - v.unsigned_abs().leading_zeros()) as usize).min(POINTER_V - 1)
}

/// Version 2's velocity class: by zigzag, so -1 and 1 differ.
#[inline(always)]
pub(super) fn pointer_v_v2(v: i64) -> usize {
    let z = super::varint::zigzag(v);
    ((64 - z.leading_zeros()) as usize).min(POINTER_V - 1)
}

/// The class of an axis's previous second difference `r`.
#[inline(always)]
pub(super) fn pointer_r(r: i64) -> usize {
    let z = super::varint::zigzag(r);
    // Bit lengths 0 and 1 are class 0, 2 is 1, 3 is 2, longer 3.
    ((64 - z.leading_zeros()) as usize).saturating_sub(1).min(POINTER_R - 1)
}

/// The fine pointer context of an axis: its previous velocity `v` and second difference `r`.
#[inline(always)]
pub(super) fn pointer_fine(v: i64, r: i64) -> usize {
    pointer_r(r) * POINTER_V + pointer_v(v)
}

/// The second difference `r` of an axis as coded: negated when the velocity it changes is
/// negative, so that slowing down (against the motion) is one sign whichever way the pointer
/// moves. Its own inverse.
#[inline(always)]
pub(super) fn along(r: i64, v: i64) -> i64 {
    let s = v >> 63;
    (r ^ s).wrapping_sub(s)
}

/// Recently used string ids of one field, most recent first. A reference is the id's position
/// here, or, for an id not in the list, the list's length plus the id; then the id moves to the
/// front. Typing returns to a few keys, so most references are small numbers.
#[derive(Default)]
pub(super) struct Recency {
    ids: Vec<u32>,
}

impl Recency {
    pub(super) fn clear(&mut self) {
        self.ids.clear();
    }

    /// The reference of `id`, moving it to the front.
    pub(super) fn reference(&mut self, id: u32) -> u64 {
        match self.ids.iter().position(|&i| i == id) {
            Some(p) => {
                self.ids[..=p].rotate_right(1);
                p as u64
            }
            None => {
                let r = self.ids.len() as u64 + u64::from(id);
                self.ids.insert(0, id);
                r
            }
        }
    }

    /// The id a reference names (inverse of [`Recency::reference`]); `None` past `ids`.
    pub(super) fn resolve(&mut self, r: u64, ids: u64) -> Option<u32> {
        let len = self.ids.len() as u64;
        if r < len {
            let p = r as usize;
            let id = self.ids[p];
            self.ids[..=p].rotate_right(1);
            return Some(id);
        }
        let id = r - len;
        if id >= ids || self.ids.contains(&(id as u32)) {
            return None;
        }
        self.ids.insert(0, id as u32);
        Some(id as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cover_every_u64_and_keep_their_extra_bits() {
        for v in [0u64, 1, 63, 64, 65, 127, 128, 1000, 1 << 40, u64::MAX - 1, u64::MAX] {
            let (t, extra) = token(v);
            assert!(usize::from(t) < ALPHABET, "{v}");
            if v < DIRECT {
                assert_eq!((u64::from(t), extra), (v, 0));
                continue;
            }
            let (n, top) = token_shape(t);
            assert_eq!(extra, n - 2);
            let rebuilt = (4 | top) << (n - 2) | (v & ((1 << (n - 2)) - 1));
            assert_eq!(rebuilt, v);
        }
        assert_eq!(token(u64::MAX).0 as usize, ALPHABET - 1);
    }

    #[test]
    fn recency_references_resolve_to_their_ids() {
        let ids = [5u32, 5, 7, 5, 300, 7, 7, 0];
        let mut enc = Recency::default();
        let refs: Vec<u64> = ids.iter().map(|&id| enc.reference(id)).collect();
        assert_eq!(refs, [5, 0, 8, 1, 302, 2, 0, 3]);
        let mut dec = Recency::default();
        let back: Vec<u32> = refs.iter().map(|&r| dec.resolve(r, 301).unwrap()).collect();
        assert_eq!(back, ids);
        // An escape naming an id already in the list, or past the block's ids, is refused.
        let mut dec = Recency::default();
        assert_eq!(dec.resolve(5, 301), Some(5));
        assert_eq!(dec.resolve(6, 301), None);
        assert_eq!(dec.resolve(302, 301), None);
    }
}
