//! LEB128 varints and zigzag mapping, the integer encoding inside block columns.

/// The longest varint of a u64, in bytes.
pub const VARINT_BYTES_MAX: usize = 10;

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline]
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The column ended inside the varint or before it.
    Truncated,
    /// More than [`VARINT_BYTES_MAX`] bytes, or bits beyond 64.
    Overlong,
}

/// Reads varints from one column, front to back.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    #[inline]
    pub fn byte(&mut self) -> Result<u8, VarintError> {
        let b = *self.bytes.get(self.pos).ok_or(VarintError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], VarintError> {
        let end = self.pos.checked_add(n).ok_or(VarintError::Truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(VarintError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, VarintError> {
        // Fast path: most column values fit in one byte.
        if let Some(&b) = self.bytes.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_slow()
    }

    #[cold]
    fn varint_slow(&mut self) -> Result<u64, VarintError> {
        let mut v = 0u64;
        for i in 0..VARINT_BYTES_MAX {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if i == VARINT_BYTES_MAX - 1 && bits > 1 {
                return Err(VarintError::Overlong);
            }
            v |= bits << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(VarintError::Overlong)
    }

    #[inline]
    pub fn signed(&mut self) -> Result<i64, VarintError> {
        self.varint().map(unzigzag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, i32::MIN as i64] {
            let mut out = Vec::new();
            put(&mut out, zigzag(v));
            assert!(out.len() <= VARINT_BYTES_MAX);
            let mut r = Reader::new(&out);
            assert_eq!(r.signed(), Ok(v));
            assert!(r.is_at_end());
        }
    }

    #[test]
    fn overlong_and_truncated_are_errors() {
        assert_eq!(Reader::new(&[0x80; 11]).varint(), Err(VarintError::Overlong));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint(),
            Err(VarintError::Overlong)
        );
        assert_eq!(Reader::new(&[0x80, 0x80]).varint(), Err(VarintError::Truncated));
        assert_eq!(Reader::new(&[]).varint(), Err(VarintError::Truncated));
    }
}
