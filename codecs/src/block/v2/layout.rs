//! How a version 3 block's pointer contexts share tables: the grouping of the previous change's
//! classes and each group's velocity buckets, which the encoder chooses by cost and the tables
//! section records (docs/FORMAT.md, "Frequency tables").

use super::{POINTER_GROUPINGS, POINTER_GROUPS, POINTER_R, POINTER_V};

/// How a block's pointer contexts map to its tables (docs/FORMAT.md, "pointer tables").
#[derive(Clone, Copy, Debug)]
pub(super) struct PointerLayout {
    /// Index into [`POINTER_GROUPINGS`].
    pub(super) grouping: usize,
    /// Each group's velocity bucket count.
    pub(super) buckets: [usize; POINTER_R],
}

impl Default for PointerLayout {
    /// One group of one table.
    fn default() -> Self {
        PointerLayout { grouping: 0, buckets: [1; POINTER_R] }
    }
}

impl PointerLayout {
    /// The first table of each group (relative to the first pointer table), and the group.
    pub(super) fn group_starts(&self) -> std::iter::Peekable<impl Iterator<Item = (usize, usize)> + '_> {
        (0..POINTER_GROUPS[self.grouping])
            .scan(0, |start, g| {
                let this = *start;
                *start += self.buckets[g];
                Some((this, g))
            })
            .peekable()
    }

    pub(super) fn tables(&self) -> usize {
        self.buckets[..POINTER_GROUPS[self.grouping]].iter().sum()
    }

    /// The table (relative to the first pointer table) of each (second difference class,
    /// velocity class).
    pub(super) fn map(&self) -> [[u8; POINTER_V]; POINTER_R] {
        pointer_map(self.grouping, &self.buckets)
    }
}

/// The pointer table (relative to the block's first) of each (second difference class, velocity
/// class), for a block with the grouping `grouping` and its groups' bucket counts `buckets`.
pub(super) fn pointer_map(grouping: usize, buckets: &[usize; POINTER_R]) -> [[u8; POINTER_V]; POINTER_R] {
    let classes = &POINTER_GROUPINGS[grouping];
    let mut starts = [0usize; POINTER_R];
    for g in 1..POINTER_GROUPS[grouping] {
        starts[g] = starts[g - 1] + buckets[g - 1];
    }
    let mut map = [[0u8; POINTER_V]; POINTER_R];
    for (r, row) in map.iter_mut().enumerate() {
        let g = usize::from(classes[r]);
        for (v, t) in row.iter_mut().enumerate() {
            *t = (starts[g] + v.min(buckets[g] - 1)) as u8;
        }
    }
    map
}
