//! One direction of a connection, reassembled by sequence number for the
//! parsers: the bytes of the current request/response turn (at most
//! [`STREAM_CAP`]), retransmissions and overlaps judged once, a gap ending
//! what can be placed; between turns only the position is followed.

/// Most bytes kept per direction: a response header block just past 16 KiB.
/// The kernel's snapshot budget for the origin's direction is the same, so
/// a stream this long means later bytes go unseen.
pub const STREAM_CAP: usize = 20 * 1024;

#[derive(Debug, Default)]
pub(super) struct Stream {
    pub(super) next_seq: Option<u32>,
    pub(super) buf: Vec<u8>,
    /// A segment went missing: later bytes cannot be placed.
    pub(super) gap: bool,
    /// The turn is answered: positions are followed, bytes not kept.
    pub(super) resting: bool,
}

impl Stream {
    /// Append the part of a segment that continues the stream; true if any.
    pub(super) fn add(&mut self, seq: u32, bytes: &[u8]) -> bool {
        let next = *self.next_seq.get_or_insert(seq);
        if self.resting && !self.gap && seq.wrapping_sub(next).cast_signed() <= 0 {
            let end = seq.wrapping_add(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
            if end.wrapping_sub(next).cast_signed() > 0 {
                self.next_seq = Some(end);
            }
            return false;
        }
        if self.gap || self.resting || bytes.is_empty() {
            return false;
        }
        // Offset of the segment relative to what we have (wrapping seq space).
        let ahead = seq.wrapping_sub(next).cast_signed();
        if ahead > 0 {
            self.gap = true;
            return false;
        }
        let skip = usize::try_from(-i64::from(ahead)).unwrap_or(usize::MAX);
        if skip >= bytes.len() {
            return false; // a retransmission of what we have
        }
        let new = &bytes[skip..];
        let room = STREAM_CAP.saturating_sub(self.buf.len());
        let take = new.len().min(room);
        self.buf.extend_from_slice(&new[..take]);
        self.next_seq = Some(next.wrapping_add(u32::try_from(new.len()).unwrap_or(u32::MAX)));
        take > 0
    }

    /// Not a retransmission of what the stream already has.
    pub(super) fn is_new(&self, seq: u32) -> bool {
        self.next_seq
            .is_none_or(|next| self.gap || seq.wrapping_sub(next).cast_signed() >= 0)
    }

    /// A new turn starts at `seq` (`None`: at the next segment seen).
    pub(super) fn restart(&mut self, seq: Option<u32>) {
        *self = Self {
            next_seq: seq,
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_reassemble_in_order_and_skip_retransmissions() {
        let mut s = Stream::default();
        assert!(s.add(100, b"GET "));
        assert!(!s.add(100, b"GET "), "retransmission");
        assert!(s.add(102, b"T / HTTP/1.1"), "overlap keeps the new part");
        assert_eq!(s.buf, b"GET / HTTP/1.1");
        assert!(!s.add(200, b"later"), "a gap stops the stream");
        assert!(!s.add(114, b"\r\n"));
        // Sequence numbers wrap.
        let mut w = Stream::default();
        assert!(w.add(u32::MAX - 1, b"ab"));
        assert!(w.add(0, b"cd"));
        assert_eq!(w.buf, b"abcd");
    }
}
