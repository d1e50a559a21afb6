//! The one byte layer under every on-disk layout: a bounds-checked little-endian [`Reader`] and
//! [`Writer`], and [`Corruption`], the reason bytes are not what was written. Layouts build their
//! offsets from named field widths (docs/FORMAT.md states each), read fields in order with a
//! `Reader` and write them in the same order with a `Writer`; no layout indexes bytes by hand, so
//! nothing here can panic on short or hostile input.

use tracevault_codecs::block::varint;

/// Why bytes on disk are not what was written: a reason, without a location (the caller adds it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Corruption {
    pub reason: String,
}

impl Corruption {
    pub fn new(reason: impl Into<String>) -> Self {
        Corruption { reason: reason.into() }
    }
}

/// Reads fixed-width little-endian fields in order. Every read names its field, so a short input
/// says which field it ended in.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// What is being read, for errors ("key store header", "signed head").
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { bytes, at: 0, what }
    }

    /// The offset of the next field.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Corruption> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            Corruption::new(format!(
                "{}: {} bytes end inside field {field} (at offset {}, {n} bytes wanted)",
                self.what,
                self.bytes.len(),
                self.at
            ))
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Corruption> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, Corruption> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, Corruption> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, Corruption> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, Corruption> {
        self.array(field).map(u64::from_le_bytes)
    }

    pub fn u128(&mut self, field: &'static str) -> Result<u128, Corruption> {
        self.array(field).map(u128::from_le_bytes)
    }

    /// An unsigned LEB128 varint of at most 64 bits (the codecs' encoding).
    pub fn varint(&mut self, field: &'static str) -> Result<u64, Corruption> {
        let mut r = varint::Reader::new(&self.bytes[self.at..]);
        let v = r.varint().map_err(|e| {
            let why = match e {
                varint::VarintError::Truncated => "ends inside",
                varint::VarintError::Overlong => "has a varint longer than 64 bits in",
            };
            Corruption::new(format!(
                "{}: {} bytes {why} field {field} (at offset {})",
                self.what,
                self.bytes.len(),
                self.at
            ))
        })?;
        self.at += r.position();
        Ok(v)
    }

    /// Skips reserved bytes, which must be zero.
    pub fn reserved(&mut self, n: usize, field: &'static str) -> Result<(), Corruption> {
        if self.take(n, field)?.iter().any(|&b| b != 0) {
            return Err(Corruption::new(format!("{}: reserved field {field} is not zero", self.what)));
        }
        Ok(())
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }

    /// Checks that every byte was read.
    pub fn finish(&self) -> Result<(), Corruption> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(Corruption::new(format!("{}: {n} bytes after the last field", self.what))),
        }
    }
}

/// Writes fixed-width little-endian fields in order, into a buffer it may share with other
/// writes (it appends).
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { out }
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u128(&mut self, v: u128) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// An unsigned LEB128 varint (the codecs' encoding).
    pub fn varint(&mut self, v: u64) -> &mut Self {
        varint::put(self.out, v);
        self
    }

    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.out.resize(self.out.len() + n, 0);
        self
    }
}

/// A fixed-size layout written with a [`Writer`] into an array, checked to fill it exactly.
pub fn fixed<const N: usize>(write: impl FnOnce(&mut Writer<'_>)) -> [u8; N] {
    let mut buf = Vec::with_capacity(N);
    write(&mut Writer::new(&mut buf));
    assert_eq!(buf.len(), N, "a fixed layout wrote {} bytes, its size is {N}", buf.len());
    let mut out = [0u8; N];
    out.copy_from_slice(&buf);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_a_short_input_names_its_field() {
        let mut buf = Vec::new();
        Writer::new(&mut buf).u8(1).u16(2).u32(3).u64(4).u128(5).zeros(2).bytes(b"xy");
        let mut r = Reader::new(&buf, "sample");
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16("b").unwrap(), 2);
        assert_eq!(r.u32("c").unwrap(), 3);
        assert_eq!(r.u64("d").unwrap(), 4);
        assert_eq!(r.u128("e").unwrap(), 5);
        r.reserved(2, "pad").unwrap();
        assert_eq!(r.rest(), b"xy");
        r.finish().unwrap();
        let err = Reader::new(&buf[..5], "sample").u64("time").unwrap_err();
        assert!(err.reason.contains("sample") && err.reason.contains("time"), "{err}");
        let mut r = Reader::new(&[0, 1], "sample");
        assert!(r.reserved(2, "pad").unwrap_err().reason.contains("pad"));
    }
}
