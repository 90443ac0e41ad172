//! A bounds-checked little-endian writer and reader for the engine's own formats (command
//! records and snapshots). Record *headers* use zerocopy structs; these variable-length
//! bodies are a sequence of fields, so a tiny cursor is clearer than a struct per shape.
//! The reader never panics: every read past the end is a `CodecError`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodecError {
    /// Byte position where decoding failed.
    pub position: usize,
}

#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }
    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }
    /// A length-prefixed (u32) byte string.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.u32(u32::try_from(value.len()).expect("field bounded by the batch limit"));
        self.bytes.extend_from_slice(value);
        self
    }
    pub fn str(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }
}

pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], CodecError> {
        let end = self.position.checked_add(count).ok_or(CodecError {
            position: self.position,
        })?;
        if end > self.bytes.len() {
            return Err(CodecError {
                position: self.position,
            });
        }
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("length 2"),
        ))
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("length 4"),
        ))
    }
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("length 8"),
        ))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(self.u32()?).map_err(|_| CodecError {
            position: self.position,
        })?;
        self.take(len)
    }
    pub fn str(&mut self) -> Result<&'a str, CodecError> {
        let position = self.position;
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError { position })
    }
    /// A count of following items, rejected when it exceeds `max`.
    pub fn count(&mut self, max: usize) -> Result<usize, CodecError> {
        let position = self.position;
        let count = usize::try_from(self.u32()?).map_err(|_| CodecError { position })?;
        if count > max {
            return Err(CodecError { position });
        }
        Ok(count)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.position..];
        self.position = self.bytes.len();
        rest
    }
    pub fn is_empty(&self) -> bool {
        self.position == self.bytes.len()
    }
    pub fn position(&self) -> usize {
        self.position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_short_input() {
        let mut writer = Writer::default();
        writer.u8(1).u16(2).u32(3).u64(4).str("five").bytes(b"six");
        let mut reader = Reader::new(&writer.bytes);
        assert_eq!(reader.u8().unwrap(), 1);
        assert_eq!(reader.u16().unwrap(), 2);
        assert_eq!(reader.u32().unwrap(), 3);
        assert_eq!(reader.u64().unwrap(), 4);
        assert_eq!(reader.str().unwrap(), "five");
        assert_eq!(reader.bytes().unwrap(), b"six");
        assert!(reader.is_empty());
        assert!(reader.u8().is_err());
        let mut short = Reader::new(&[5, 0, 0, 0, 1]);
        assert!(short.bytes().is_err());
    }
}
