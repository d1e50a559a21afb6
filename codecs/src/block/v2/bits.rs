//! The bit streams of version 2 and 3 blocks: the extra bits of large values and the frequency
//! tables are written least significant bit first into bytes (docs/FORMAT.md, "Block, version 3").

/// Writes bits least significant first into bytes.
#[derive(Default)]
pub(super) struct BitWriter {
    pub(super) bytes: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.acc = 0;
        self.n = 0;
    }

    /// Writes the low `count` bits of `v` (`count <= 64`).
    #[inline]
    pub(super) fn put(&mut self, v: u64, count: u32) {
        if count > 32 {
            self.put32(v & 0xffff_ffff, 32);
            self.put32(v >> 32, count - 32);
        } else {
            self.put32(v, count);
        }
    }

    #[inline]
    fn put32(&mut self, v: u64, count: u32) {
        debug_assert!(count <= 32 && self.n < 8);
        self.acc |= (v & ((1u64 << count) - 1)) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Elias gamma of `v >= 1`: as many zeros as `v` has bits after its leading one, a one, then
    /// those bits.
    pub(super) fn gamma(&mut self, v: u64) {
        debug_assert!(v >= 1);
        let n = 63 - v.leading_zeros();
        self.put(1 << n, n + 1);
        self.put(v, n);
    }

    /// Pads the last byte with zeros.
    pub(super) fn finish(&mut self) {
        if self.n > 0 {
            self.bytes.push(self.acc as u8);
            self.acc = 0;
            self.n = 0;
        }
    }
}

/// Why a bit stream could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BitsError {
    Truncated,
    Overlong,
}

/// Reads what [`BitWriter`] wrote.
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0, acc: 0, n: 0 }
    }

    /// Reads `count <= 64` bits.
    #[inline]
    pub(super) fn get(&mut self, count: u32) -> Result<u64, BitsError> {
        if count > 32 {
            let low = self.get32(32)?;
            Ok(low | self.get32(count - 32)? << 32)
        } else {
            self.get32(count)
        }
    }

    #[inline(always)]
    fn get32(&mut self, count: u32) -> Result<u64, BitsError> {
        if self.n < count {
            self.refill(count)?;
        }
        let v = self.acc & ((1u64 << count) - 1);
        self.acc >>= count;
        self.n -= count;
        Ok(v)
    }

    /// Loads whole bytes until at least `count <= 32` bits are held: eight at once where the
    /// stream has them (one unaligned load, no loop), else one by one.
    #[inline(always)]
    fn refill(&mut self, count: u32) -> Result<(), BitsError> {
        if let Some(word) = self.bytes.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            let take = (63 - self.n) / 8;
            self.acc |= word << self.n;
            self.pos += take as usize;
            self.n += take * 8;
            // `self.n` was below 32, so at least 32 bits are held now.
            return Ok(());
        }
        while self.n < count {
            let &b = self.bytes.get(self.pos).ok_or(BitsError::Truncated)?;
            self.acc |= u64::from(b) << self.n;
            self.pos += 1;
            self.n += 8;
        }
        Ok(())
    }

    pub(super) fn gamma(&mut self) -> Result<u64, BitsError> {
        let mut n = 0;
        while self.get(1)? == 0 {
            n += 1;
            if n > 63 {
                return Err(BitsError::Overlong);
            }
        }
        Ok(1 << n | self.get(n)?)
    }

    /// Whether everything was read: no bytes left, none loaded and unread, and only zero padding
    /// in the last one.
    pub(super) fn is_at_end(&self) -> bool {
        self.pos == self.bytes.len() && self.n < 8 && self.acc == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_gamma_round_trip() {
        let mut w = BitWriter::default();
        let values = [(5u64, 3u32), (0, 0), (u64::MAX, 64), (1, 1), (0x1234_5678_9abc, 45)];
        for &(v, n) in &values {
            w.put(v, n);
            w.gamma(v.max(1));
        }
        w.finish();
        let mut r = BitReader::new(&w.bytes);
        for &(v, n) in &values {
            let mask = if n == 64 { u64::MAX } else { (1 << n) - 1 };
            assert_eq!(r.get(n).unwrap(), v & mask);
            assert_eq!(r.gamma().unwrap(), v.max(1));
        }
        assert!(r.is_at_end());
    }
}
