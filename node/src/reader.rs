//! Reading the node's own binary formats (envelopes, journal records, snapshots): a cursor
//! over bytes whose every read is bounds-checked and fails with the caller's own error, so a
//! truncated or hostile input is a clean refusal, never a panic or an allocation it names.

/// A cursor over `bytes`; each read past the end fails with `truncated`.
#[derive(Debug)]
pub(crate) struct Reader<'a, E> {
    bytes: &'a [u8],
    at: usize,
    truncated: E,
}

impl<'a, E: Clone> Reader<'a, E> {
    /// A cursor at the start of `bytes`; `truncated` is the error of a read past the end.
    pub(crate) fn new(bytes: &'a [u8], truncated: E) -> Reader<'a, E> {
        Reader {
            bytes,
            at: 0,
            truncated,
        }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], E> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| self.truncated.clone())?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], E> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub(crate) fn byte(&mut self) -> Result<u8, E> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian `u32`, as a length.
    pub(crate) fn len_u32(&mut self) -> Result<usize, E> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }

    /// A little-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, E> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// How many bytes were read.
    pub(crate) fn position(&self) -> usize {
        self.at
    }

    /// The bytes not read yet (and the cursor moves to the end).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }

    /// Whether every byte was read.
    pub(crate) fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_past_the_end_fail_with_the_callers_error() {
        let mut r = Reader::new(&[1, 0, 0, 0, 9], "short");
        assert_eq!(r.len_u32(), Ok(1));
        assert_eq!(r.byte(), Ok(9));
        assert!(r.is_done());
        assert_eq!(r.byte(), Err("short"));
        assert_eq!(r.take(usize::MAX), Err("short"));
    }

    proptest! {
        #[test]
        fn any_sequence_of_reads_on_any_bytes_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            reads in prop::collection::vec(0usize..80, 0..10),
        ) {
            let mut r = Reader::new(&bytes, ());
            let mut total = 0usize;
            for n in reads {
                if r.take(n).is_ok() {
                    total += n;
                }
            }
            prop_assert_eq!(r.position(), total);
            prop_assert!(r.position() <= bytes.len());
        }
    }
}
