//! The entropy coder of version 2 and 3 blocks: a two-way interleaved rANS coder (Duda's
//! asymmetric numeral systems, in the byte-renormalising form of Giesen's `rans_byte`); the
//! frequency tables it codes with are in `freqs.rs`, the bit streams in `bits.rs`.
//! docs/FORMAT.md ("Block, version 3") is the bit-exact description.
//!
//! Why hand-written rather than a crate: the decoder's inner step is three loads, a multiply and
//! a rarely taken renormalisation, inlined into the event loop with the context chosen from the
//! event just decoded; the format must also be specified to the bit in FORMAT.md. constriction's
//! coders (the reference) are generic over word sizes and models and would have had to be
//! wrapped to give either. The code is small and every byte it reads is checked.

use super::freqs::{Freqs, PRECISION_MAX};

/// Renormalisation bound: a state lives in `[RANS_L, RANS_L << 8)`.
pub(super) const RANS_L: u32 = 1 << 23;
/// Bytes of the two flushed states at the start of the rANS section.
pub(super) const STATE_BYTES: usize = 8;

/// A symbol as the encoder codes it, with the division by its frequency turned into a multiply
/// and a shift (Giesen's reciprocal form: exact for states below 2^31, which `RANS_L << 8` is).
/// Measured: the division was a fifth of encoding time.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct EncSymbol {
    /// States at or above this are renormalised before the symbol is coded.
    x_max: u32,
    rcp_freq: u32,
    rcp_shift: u32,
    bias: u32,
    /// `(1 << precision) - freq`.
    cmpl_freq: u32,
}

impl EncSymbol {
    fn new(start: u32, freq: u32, precision: u32) -> EncSymbol {
        debug_assert!(freq >= 1 && start + freq <= 1 << precision);
        let x_max = ((RANS_L >> precision) << 8) * freq;
        let cmpl_freq = (1 << precision) - freq;
        if freq < 2 {
            // x / 1 = x: a reciprocal of 2^32 - 1 with shift 32 gives x - 1 for x >= 1, and the
            // bias adds the 1 back (with the whole range, as the frequency-one case needs).
            return EncSymbol {
                x_max,
                rcp_freq: !0,
                rcp_shift: 32,
                bias: start + (1 << precision) - 1,
                cmpl_freq,
            };
        }
        let shift = 32 - (freq - 1).leading_zeros(); // ceil(log2(freq))
        let rcp_freq = (1u64 << (shift + 31)).div_ceil(u64::from(freq)) as u32;
        EncSymbol { x_max, rcp_freq, rcp_shift: shift - 1 + 32, bias: start, cmpl_freq }
    }
}

/// Writes one context's encoding table into `symbols` (a coded symbol per symbol of the
/// alphabet, `symbols.len()` of them); returns whether the table is *trivial*: only one symbol,
/// coded in no bits, which the coder skips.
pub(super) fn build_enc_table(freqs: &Freqs, symbols: &mut [EncSymbol]) -> bool {
    if freqs.symbols.len() <= 1 {
        return true;
    }
    let mut start = 0;
    for &(s, f) in &freqs.symbols {
        symbols[usize::from(s)] = EncSymbol::new(start, f, freqs.precision);
        start += f;
    }
    false
}

/// Encodes in reverse into a byte vector that is reversed at the end.
pub(super) struct RansEncoder {
    /// The state of the lane the next symbol goes on, then the other's; they swap after every
    /// symbol (see [`RansDecoder`]). Symbols are put last first, and the last symbol of all is on
    /// whichever lane the count gives, but both states start equal, so it does not matter which
    /// is which until the end: after the first symbol (put last) `x` is always lane 1.
    x: u32,
    y: u32,
    bytes: Vec<u8>,
}

impl RansEncoder {
    pub(super) fn new(mut bytes: Vec<u8>) -> Self {
        bytes.clear();
        RansEncoder { x: RANS_L, y: RANS_L, bytes }
    }

    /// Codes one symbol on the current lane, then switches lanes. Symbols are put last first.
    #[inline]
    pub(super) fn put(&mut self, s: EncSymbol) {
        let mut x = self.x;
        while x >= s.x_max {
            self.bytes.push(x as u8);
            x >>= 8;
        }
        let q = ((u64::from(x) * u64::from(s.rcp_freq)) >> s.rcp_shift) as u32;
        (self.x, self.y) = (self.y, x + s.bias + q * s.cmpl_freq);
    }

    /// The coded bytes, in reading order: both states (lane 0's first), then the
    /// renormalisation bytes.
    pub(super) fn finish(mut self) -> Vec<u8> {
        // Having put symbol 0 (on lane 0), the current lane is lane 1.
        for x in [self.x, self.y] {
            for shift in [0, 8, 16, 24] {
                self.bytes.push((x >> shift) as u8);
            }
        }
        self.bytes.reverse();
        self.bytes
    }
}

/// One slot of a decoding table, packed in a word so a lookup is one load: the symbol (9 bits),
/// its frequency (10) and the slot's offset within the symbol's range (9).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Slot(u32);

const SLOT_SYMBOL_BITS: u32 = 9;
const SLOT_FREQ_BITS: u32 = 10;
const _: () = assert!(super::ALPHABET <= 1 << SLOT_SYMBOL_BITS && 1 << PRECISION_MAX < 1 << SLOT_FREQ_BITS);
const _: () = assert!(SLOT_SYMBOL_BITS + SLOT_FREQ_BITS + PRECISION_MAX <= 32);

impl Slot {
    fn new(symbol: u16, freq: u32, bias: u32) -> Slot {
        Slot(u32::from(symbol) | freq << SLOT_SYMBOL_BITS | bias << (SLOT_SYMBOL_BITS + SLOT_FREQ_BITS))
    }

    #[inline(always)]
    fn symbol(self) -> u16 {
        (self.0 & ((1 << SLOT_SYMBOL_BITS) - 1)) as u16
    }

    #[inline(always)]
    fn freq(self) -> u32 {
        (self.0 >> SLOT_SYMBOL_BITS) & ((1 << SLOT_FREQ_BITS) - 1)
    }

    #[inline(always)]
    fn bias(self) -> u32 {
        self.0 >> (SLOT_SYMBOL_BITS + SLOT_FREQ_BITS)
    }
}

/// One context's decoding table: where its slots (one per `1 << precision`) start in the block's
/// slots, or the one symbol it codes in no bits, or none.
#[derive(Clone, Copy, Debug)]
pub(super) struct DecTable {
    start: u32,
    precision: u32,
    mask: u32,
    /// [`DecTable::SLOTS`]: decode through the slots; [`DecTable::UNUSED`]: the context has no
    /// symbol; else the only symbol, coded in no bits.
    only: u16,
}

impl Default for DecTable {
    fn default() -> Self {
        DecTable { start: 0, precision: 0, mask: 0, only: DecTable::UNUSED }
    }
}

impl DecTable {
    const SLOTS: u16 = u16::MAX;
    const UNUSED: u16 = u16::MAX - 1;

    /// The table of `freqs`, its slots appended to `slots`.
    pub(super) fn build(freqs: &Freqs, slots: &mut Vec<Slot>) -> DecTable {
        let mut table = DecTable::default();
        match freqs.symbols.as_slice() {
            [] => return table,
            [(s, _)] => {
                table.only = *s;
                return table;
            }
            _ => {}
        }
        table.only = DecTable::SLOTS;
        table.precision = freqs.precision;
        table.mask = (1u32 << freqs.precision) - 1;
        table.start = slots.len() as u32;
        slots.reserve(1 << freqs.precision);
        for &(symbol, f) in &freqs.symbols {
            slots.extend((0..f).map(|bias| Slot::new(symbol, f, bias)));
        }
        debug_assert_eq!(slots.len() - table.start as usize, 1 << freqs.precision);
        table
    }
}

/// Why the rANS section did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RansError {
    /// A symbol in a context no table describes.
    NoTable,
    Truncated,
    /// An initial state outside `[L, 256 L)`: no encoder wrote it.
    BadState,
}

/// Decodes what [`RansEncoder`] wrote, first symbol first.
pub(super) struct RansDecoder<'a> {
    /// The state of the lane the next symbol is coded on, then the other lane's: after each
    /// symbol they swap, which is the alternation of lanes without indexing by a lane number (a
    /// stored, reloaded index cost a store-forwarding stall per symbol).
    x: u32,
    y: u32,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> RansDecoder<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Result<Self, RansError> {
        if bytes.len() < STATE_BYTES {
            return Err(RansError::Truncated);
        }
        let state = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let (x, y) = (state(0), state(4));
        // An encoder's states never leave [L, 256 L); the decoder's renormalisation counts on it.
        if !(RANS_L..RANS_L << 8).contains(&x) || !(RANS_L..RANS_L << 8).contains(&y) {
            return Err(RansError::BadState);
        }
        Ok(RansDecoder { x, y, bytes, pos: STATE_BYTES })
    }

    #[inline(always)]
    pub(super) fn get(&mut self, t: &DecTable, slots: &[Slot]) -> Result<u16, RansError> {
        if t.only != DecTable::SLOTS {
            return if t.only == DecTable::UNUSED { Err(RansError::NoTable) } else { Ok(t.only) };
        }
        let x = self.x;
        let slot = slots[(t.start + (x & t.mask)) as usize];
        let x = slot.freq() * (x >> t.precision) + slot.bias();
        // A decoded state is at least 2^(23 - PRECISION_MAX) = 2^14, so at most two bytes bring
        // it back to [L, 256 L): as many as its leading zeros say, read in one load without a
        // branch where four bytes remain (the loop is for the last few).
        const _: () = assert!(RANS_L >> PRECISION_MAX >= 1 << 8);
        let x = match self.bytes.get(self.pos..self.pos + 4) {
            Some(word) => {
                let word = u32::from_be_bytes(word.try_into().expect("4 bytes"));
                let take = (x.leading_zeros() - 1) / 8;
                self.pos += take as usize;
                ((u64::from(x) << (8 * take)) | (u64::from(word) >> (32 - 8 * take))) as u32
            }
            None => {
                let mut x = x;
                while x < RANS_L {
                    let &b = self.bytes.get(self.pos).ok_or(RansError::Truncated)?;
                    x = x << 8 | u32::from(b);
                    self.pos += 1;
                }
                x
            }
        };
        (self.x, self.y) = (self.y, x);
        Ok(slot.symbol())
    }

    /// Whether the section was exactly consumed and both states are back where encoding began
    /// (a check the coder gives for free: any damage almost surely breaks it).
    pub(super) fn is_at_end(&self) -> bool {
        self.pos == self.bytes.len() && self.x == RANS_L && self.y == RANS_L
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rans_round_trips_on_both_lanes() {
        let counts = [50u32, 3, 0, 20, 1];
        let freqs = Freqs::normalize(&counts);
        let mut enc_t = vec![EncSymbol::default(); counts.len()];
        assert!(!build_enc_table(&freqs, &mut enc_t));
        let mut slots = Vec::new();
        let dec_t = DecTable::build(&freqs, &mut slots);
        let symbols: Vec<u16> =
            (0..1000u32).map(|i| [0u16, 0, 3, 0, 1, 3, 4, 0][(i * 7 % 8) as usize]).collect();
        let mut enc = RansEncoder::new(Vec::new());
        for &s in symbols.iter().rev() {
            enc.put(enc_t[usize::from(s)]);
        }
        let bytes = enc.finish();
        let mut dec = RansDecoder::new(&bytes).unwrap();
        for &s in &symbols {
            assert_eq!(dec.get(&dec_t, &slots).unwrap(), s);
        }
        assert!(dec.is_at_end());
    }
}
