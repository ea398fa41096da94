//! The chunked transfer coding of a server's response (RFC 9112 7.1),
//! decoded from the bytes read so far: each chunk's data as it arrives,
//! then the trailer fields. The proxy's own HTTP server encodes the body
//! again for the client, as its connection needs.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The longest chunk-size line (size and extensions) taken.
const MAX_SIZE_LINE: usize = 4096;
/// The most bytes of trailer fields taken, and the most fields.
const MAX_TRAILERS: usize = 64 * 1024;
const MAX_TRAILER_FIELDS: usize = 64;

/// Where in the chunked body the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before a chunk-size line.
    Size,
    /// In a chunk's data, with this much left.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk, at the trailer section.
    Trailers,
    /// The body has ended.
    Done,
}

/// What the bytes read so far gave.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// Some of a chunk's data.
    Data(Bytes),
    /// The trailer fields, when the server sent any.
    Trailers(HeaderMap),
    /// The body has ended; the bytes after it are the next response's.
    End,
    /// More bytes are needed.
    More,
}

/// A chunked body's decoder.
#[derive(Debug)]
pub struct Chunked {
    at: At,
}

impl Chunked {
    pub fn new() -> Chunked {
        Chunked { at: At::Size }
    }

    /// Decodes from the front of `read`, taking what it uses.
    pub fn decode(&mut self, read: &mut BytesMut) -> io::Result<Decoded> {
        loop {
            match self.at {
                At::Size => {
                    let Some(line) = take_line(read, MAX_SIZE_LINE)? else {
                        return Ok(Decoded::More);
                    };
                    self.at = match chunk_size(&line)? {
                        0 => At::Trailers,
                        size => At::Data(size),
                    };
                }
                At::Data(left) => {
                    if read.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(left).map_or(read.len(), |left| left.min(read.len()));
                    let data = read.split_to(n).freeze();
                    let left = left - n as u64;
                    self.at = if left == 0 {
                        At::DataEnd
                    } else {
                        At::Data(left)
                    };
                    return Ok(Decoded::Data(data));
                }
                At::DataEnd => {
                    if read.len() < 2 {
                        return Ok(Decoded::More);
                    }
                    if &read[..2] != b"\r\n" {
                        return Err(invalid("a chunk's data is not followed by CRLF"));
                    }
                    read.advance(2);
                    self.at = At::Size;
                }
                At::Trailers => {
                    if read.starts_with(b"\r\n") {
                        read.advance(2);
                        self.at = At::Done;
                        continue;
                    }
                    let Some(trailers) = trailers(read)? else {
                        return Ok(Decoded::More);
                    };
                    self.at = At::Done;
                    return Ok(Decoded::Trailers(trailers));
                }
                At::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The line at the front of `read`, without its CRLF, once it is whole.
fn take_line(read: &mut BytesMut, max: usize) -> io::Result<Option<BytesMut>> {
    match read.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= max => {
            let line = read.split_to(end);
            read.advance(2);
            Ok(Some(line))
        }
        Some(_) => Err(invalid("a chunk-size line is too long")),
        None if read.len() > max => Err(invalid("a chunk-size line is too long")),
        None => Ok(None),
    }
}

/// A chunk-size line's size: hex digits (leading zeros aside, at most 15),
/// then optional whitespace and extensions after `;`, which are ignored but
/// may hold no control character.
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (hex, rest) = line.split_at(digits);
    let rest_ok = rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .is_none_or(|i| rest[i] == b';')
        && !rest.iter().any(|&b| b.is_ascii_control() && b != b'\t');
    let significant = hex.iter().skip_while(|&&b| b == b'0').count();
    if digits == 0 || significant > 15 || !rest_ok {
        return Err(invalid("a chunk-size line is not a hex size"));
    }
    hex.iter().try_fold(0u64, |size, &b| {
        let digit = char::from(b)
            .to_digit(16)
            .ok_or_else(|| invalid("not hex"))?;
        Ok(size << 4 | u64::from(digit))
    })
}

/// The trailer section at the front of `read`, once it is whole.
fn trailers(read: &mut BytesMut) -> io::Result<Option<HeaderMap>> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let (used, fields) = match httparse::parse_headers(read, &mut fields) {
        Ok(httparse::Status::Complete(parsed)) => parsed,
        Ok(httparse::Status::Partial) if read.len() > MAX_TRAILERS => {
            return Err(invalid("the trailer section is too long"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("the trailer section: {e}"))),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| invalid("a trailer field's name"))?;
        let value =
            HeaderValue::from_bytes(field.value).map_err(|_| invalid("a trailer field's value"))?;
        map.append(name, value);
    }
    read.advance(used);
    Ok(Some(map))
}

/// A server's bytes that are not what HTTP allows there.
pub fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything `wire` decodes to when it arrives `step` bytes at a time:
    /// the data joined, the trailers, and the bytes after the end.
    fn decode_in_steps(wire: &[u8], step: usize) -> io::Result<(Vec<u8>, HeaderMap, Vec<u8>)> {
        let mut decoder = Chunked::new();
        let (mut data, mut trailers) = (Vec::new(), HeaderMap::new());
        let mut read = BytesMut::new();
        let mut pieces = wire.chunks(step);
        loop {
            match decoder.decode(&mut read)? {
                Decoded::Data(bytes) => {
                    assert!(!bytes.is_empty(), "no empty data frames");
                    data.extend_from_slice(&bytes);
                }
                Decoded::Trailers(map) => trailers = map,
                Decoded::End => {
                    let left =
                        pieces.fold(read.to_vec(), |left, piece| [left, piece.to_vec()].concat());
                    return Ok((data, trailers, left));
                }
                Decoded::More => match pieces.next() {
                    Some(piece) => read.extend_from_slice(piece),
                    None => return Err(invalid("ended early")),
                },
            }
        }
    }

    #[test]
    fn chunks_decode_the_same_however_the_bytes_arrive() {
        let wire = b"5\r\nhello\r\n1;name=value\r\n \r\n0000000000000010 \r\n0123456789abcdef\r\n0\r\n\r\nNEXT";
        for step in 1..=wire.len() {
            let (data, trailers, left) = decode_in_steps(wire, step).unwrap();
            assert_eq!(data, b"hello 0123456789abcdef", "step {step}");
            assert!(trailers.is_empty());
            assert_eq!(left, b"NEXT", "step {step}: the next response's bytes stay");
        }
    }

    #[test]
    fn trailer_fields_come_after_the_last_chunk() {
        let wire = b"3\r\nabc\r\n0\r\nx-digest: 900150983\r\nx-n: 1\r\n\r\n";
        for step in 1..=wire.len() {
            let (data, trailers, left) = decode_in_steps(wire, step).unwrap();
            assert_eq!(data, b"abc");
            assert_eq!(trailers["x-digest"], "900150983", "step {step}");
            assert_eq!(trailers["x-n"], "1");
            assert!(left.is_empty());
        }
    }

    #[test]
    fn malformed_chunks_are_errors_not_guesses() {
        for wire in [
            &b"x\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"-3\r\nabc\r\n0\r\n\r\n",
            b"1000000000000000\r\n",
            b"3;a\nb\r\nabc\r\n0\r\n\r\n",
            b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
        ] {
            let decoded = decode_in_steps(wire, wire.len());
            assert_eq!(
                decoded.map_err(|e| e.kind()).err(),
                Some(io::ErrorKind::InvalidData),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        let long = vec![b'1'; MAX_SIZE_LINE + 1];
        assert!(
            decode_in_steps(&long, 7).is_err(),
            "a size line without end"
        );
    }
}
