//! Strict HTTP/1.1 request framing, checked on a connection's raw bytes before hyper
//! parses them (hyper, through httparse, accepts a bare LF as a line end and any
//! transfer coding list that ends in `chunked`). Where a front proxy and this server
//! could disagree on where a request ends, the request is refused instead: every line of
//! a request head, chunk-size line and trailer ends in CRLF; `Transfer-Encoding` is
//! absent or exactly `chunked`, and not combined with `Content-Length`; `Content-Length`
//! values are digits and agree. The heads themselves are parsed with httparse (hyper's
//! parser, same settings), so what passes here is what hyper reads.
//!
//! [`Framing`] follows one connection: a head, then its body by `Content-Length` or by
//! chunks, then the next head. It only reads; the IO wrapper in `http.rs` feeds it every
//! byte before hyper sees it and, at the first [`FramingError`], answers in the DMS
//! envelope and closes the connection.

/// Longest request head accepted (431 beyond); below hyper's read buffer
/// (`http::READ_BUF_BYTES_MAX`), so this check speaks first.
pub const HEAD_BYTES_MAX: usize = 32 * 1024;
/// Header fields in one head (hyper's own limit is 100).
pub const HEADERS_MAX: usize = 100;
/// Longest chunk-size line (size and extensions).
pub const CHUNK_LINE_BYTES_MAX: usize = 4 * 1024;
/// Trailer bytes after a chunked body.
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;

/// Why a request's framing is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// A line ends in LF without CR (in the head, a chunk line or a trailer).
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// The head does not parse (httparse's reason).
    Malformed(String),
    /// `Transfer-Encoding` other than exactly `chunked` (the value, or the count).
    TransferEncoding(String),
    /// Both `Transfer-Encoding` and `Content-Length`.
    LengthAndChunked,
    /// A `Content-Length` that is not digits, or values that disagree.
    ContentLength,
    /// The head is longer than [`HEAD_BYTES_MAX`] or has more than [`HEADERS_MAX`] fields.
    HeadTooLarge,
    /// A chunk-size line that is not hex digits and extensions, or too long.
    ChunkLine,
    /// Chunk data not followed by CRLF.
    ChunkEnd,
    /// More than [`TRAILER_BYTES_MAX`] of trailers.
    TrailersTooLarge,
}

impl FramingError {
    /// 431 for sizes, 400 for the rest.
    pub fn status(&self) -> http::StatusCode {
        match self {
            FramingError::HeadTooLarge | FramingError::TrailersTooLarge => {
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            FramingError::BareLf
            | FramingError::BareCr
            | FramingError::Malformed(_)
            | FramingError::TransferEncoding(_)
            | FramingError::LengthAndChunked
            | FramingError::ContentLength
            | FramingError::ChunkLine
            | FramingError::ChunkEnd => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The sentence for the error body.
    pub fn message(&self) -> String {
        match self {
            FramingError::BareLf => {
                "A line of the request ends in a bare LF; HTTP/1.1 lines end in CRLF.".into()
            }
            FramingError::BareCr => "The request has a CR that is not followed by LF.".into(),
            FramingError::Malformed(reason) => format!("The request head is malformed: {reason}."),
            FramingError::TransferEncoding(value) => format!(
                "Transfer-Encoding {value:?} is not supported; only exactly \"chunked\" is."
            ),
            FramingError::LengthAndChunked => {
                "The request has both Transfer-Encoding and Content-Length.".into()
            }
            FramingError::ContentLength => "The request's Content-Length is not valid.".into(),
            FramingError::HeadTooLarge => format!(
                "The request head is larger than {HEAD_BYTES_MAX} bytes or has more than \
                 {HEADERS_MAX} fields."
            ),
            FramingError::ChunkLine => "A chunk-size line of the body is not valid.".into(),
            FramingError::ChunkEnd => "Chunk data is not followed by CRLF.".into(),
            FramingError::TrailersTooLarge => {
                format!("The trailers are larger than {TRAILER_BYTES_MAX} bytes.")
            }
        }
    }
}

/// Where the connection is in its stream of requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Collecting a request head.
    Head,
    /// A body of this many more bytes (Content-Length).
    Body(u64),
    /// Collecting a chunk-size line.
    ChunkSize,
    /// This many more bytes of chunk data.
    ChunkData(u64),
    /// Expecting the CR, then the LF, after chunk data (true once the CR came).
    ChunkEnd(bool),
    /// Collecting trailer lines, up to an empty one.
    Trailers,
}

/// The framing of one connection's requests, fed its bytes in order.
pub struct Framing {
    state: State,
    /// The head or line being collected (bounded by the maxima above).
    line: Vec<u8>,
    trailer_bytes: usize,
}

impl Default for Framing {
    fn default() -> Framing {
        Framing::new()
    }
}

impl Framing {
    pub fn new() -> Framing {
        Framing {
            state: State::Head,
            line: Vec::new(),
            trailer_bytes: 0,
        }
    }

    /// Checks the connection's next `bytes`. After an error the connection is closed and
    /// nothing more is fed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), FramingError> {
        // Bounded: every pass consumes at least one byte.
        while !bytes.is_empty() {
            let used = match self.state {
                State::Head => self.feed_head(bytes)?,
                State::Body(remaining) => {
                    let used = clamp(remaining, bytes.len());
                    self.state = next_or(remaining, used, State::Body, State::Head);
                    used
                }
                State::ChunkSize => self.feed_chunk_size(bytes)?,
                State::ChunkData(remaining) => {
                    let used = clamp(remaining, bytes.len());
                    self.state = next_or(remaining, used, State::ChunkData, State::ChunkEnd(false));
                    used
                }
                State::ChunkEnd(seen_cr) => {
                    self.state = match (seen_cr, bytes[0]) {
                        (false, b'\r') => State::ChunkEnd(true),
                        (true, b'\n') => State::ChunkSize,
                        _ => return Err(FramingError::ChunkEnd),
                    };
                    1
                }
                State::Trailers => self.feed_trailers(bytes)?,
            };
            assert!(used > 0, "each pass consumes a byte");
            bytes = &bytes[used..];
        }
        Ok(())
    }

    /// Collects one line into `self.line` from `bytes`, CRLF strictly; returns the bytes
    /// used and whether the line (CRLF included) is complete.
    fn take_line(
        &mut self,
        bytes: &[u8],
        max: usize,
        too_long: FramingError,
    ) -> Result<(usize, bool), FramingError> {
        for (index, &byte) in bytes.iter().enumerate() {
            let after_cr = self.line.last() == Some(&b'\r');
            if byte == b'\n' && !after_cr {
                return Err(FramingError::BareLf);
            }
            if after_cr && byte != b'\n' {
                return Err(FramingError::BareCr);
            }
            self.line.push(byte);
            if self.line.len() > max {
                return Err(too_long);
            }
            if byte == b'\n' {
                return Ok((index + 1, true));
            }
        }
        Ok((bytes.len(), false))
    }

    fn feed_head(&mut self, bytes: &[u8]) -> Result<usize, FramingError> {
        // A head is lines up to an empty one; collect line by line into one buffer.
        let mut used = 0;
        // Bounded by `bytes`: each line consumes at least one byte.
        while used < bytes.len() {
            let (taken, complete) =
                self.take_line(&bytes[used..], HEAD_BYTES_MAX, FramingError::HeadTooLarge)?;
            used += taken;
            if !complete {
                break;
            }
            if self.line == b"\r\n" {
                // An empty line before the request line is ignored (RFC 9112 §2.2).
                self.line.clear();
            } else if self.line.ends_with(b"\r\n\r\n") {
                self.head_complete()?;
                break;
            }
        }
        Ok(used)
    }

    /// The head in `self.line` is complete: parse it and pick the body's framing.
    fn head_complete(&mut self) -> Result<(), FramingError> {
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&self.line) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(FramingError::Malformed("incomplete".into()))
            }
            Err(httparse::Error::TooManyHeaders) => return Err(FramingError::HeadTooLarge),
            Err(error) => return Err(FramingError::Malformed(error.to_string())),
        }
        let mut codings = request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
        let chunked = match (codings.next(), codings.next()) {
            (None, _) => false,
            (Some(coding), None) => {
                let value = String::from_utf8_lossy(coding.value);
                if !value.trim().eq_ignore_ascii_case("chunked") {
                    return Err(FramingError::TransferEncoding(value.into_owned()));
                }
                true
            }
            (Some(_), Some(_)) => {
                return Err(FramingError::TransferEncoding(
                    "(more than one Transfer-Encoding field)".into(),
                ))
            }
        };
        let mut length = None;
        for header in request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        {
            let text =
                std::str::from_utf8(header.value).map_err(|_| FramingError::ContentLength)?;
            for value in text.split(',').map(str::trim) {
                let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                let parsed: u64 = value
                    .parse()
                    .ok()
                    .filter(|_| digits)
                    .ok_or(FramingError::ContentLength)?;
                if length.is_some_and(|known| known != parsed) {
                    return Err(FramingError::ContentLength);
                }
                length = Some(parsed);
            }
        }
        self.line.clear();
        self.state = match (chunked, length) {
            (true, Some(_)) => return Err(FramingError::LengthAndChunked),
            (true, None) => State::ChunkSize,
            (false, Some(n)) if n > 0 => State::Body(n),
            (false, _) => State::Head,
        };
        Ok(())
    }

    fn feed_chunk_size(&mut self, bytes: &[u8]) -> Result<usize, FramingError> {
        let (used, complete) =
            self.take_line(bytes, CHUNK_LINE_BYTES_MAX, FramingError::ChunkLine)?;
        if complete {
            let line = &self.line[..self.line.len() - 2];
            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let rest = &line[digits..];
            let rest_ok = rest
                .iter()
                .position(|b| *b != b' ' && *b != b'\t')
                .is_none_or(|at| rest[at] == b';');
            if digits == 0 || digits > 16 || !rest_ok {
                return Err(FramingError::ChunkLine);
            }
            let text = std::str::from_utf8(&line[..digits]).expect("hex digits are ASCII");
            let size = u64::from_str_radix(text, 16).map_err(|_| FramingError::ChunkLine)?;
            self.line.clear();
            self.state = if size == 0 {
                self.trailer_bytes = 0;
                State::Trailers
            } else {
                State::ChunkData(size)
            };
        }
        Ok(used)
    }

    fn feed_trailers(&mut self, bytes: &[u8]) -> Result<usize, FramingError> {
        let room = TRAILER_BYTES_MAX - self.trailer_bytes;
        let (used, complete) = self.take_line(bytes, room, FramingError::TrailersTooLarge)?;
        if complete {
            self.trailer_bytes += self.line.len();
            let last = self.line == b"\r\n";
            self.line.clear();
            if last {
                self.state = State::Head;
            }
        }
        Ok(used)
    }
}

/// How many of `available` bytes a part with `remaining` bytes takes.
fn clamp(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

/// The state after taking `used` of `remaining`: `more` with the rest, or `done`.
fn next_or(remaining: u64, used: usize, more: fn(u64) -> State, done: State) -> State {
    let left = remaining - u64::try_from(used).expect("usize fits u64");
    if left == 0 {
        done
    } else {
        more(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes; returns the first error, if any.
    fn check(input: &[u8], piece: usize) -> Result<(), FramingError> {
        let mut framing = Framing::new();
        input.chunks(piece).try_for_each(|part| framing.feed(part))
    }

    fn every_split(input: &[u8]) -> Result<(), FramingError> {
        let whole = check(input, input.len().max(1));
        for piece in 1..8 {
            assert_eq!(check(input, piece), whole, "in pieces of {piece}");
        }
        whole
    }

    #[test]
    fn well_framed_requests_pass_whatever_the_pieces() {
        let input = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab\ncd\
            POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n\
            3;ext=1\r\na\nb\r\n0\r\nX-T: 1\r\n\r\n\
            GET /d HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 0\r\n\r\n";
        assert_eq!(every_split(input), Ok(()));
    }

    #[test]
    fn bare_line_feeds_are_refused_in_heads_and_chunk_lines_only() {
        assert_eq!(
            every_split(b"GET / HTTP/1.1\nHost: x\n\n"),
            Err(FramingError::BareLf)
        );
        assert_eq!(
            every_split(b"GET / HTTP/1.1\r\nHost: x\n\r\n"),
            Err(FramingError::BareLf)
        );
        assert_eq!(
            every_split(b"GET / HTTP/1.1\rHost: x\r\n\r\n"),
            Err(FramingError::BareCr)
        );
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n";
        assert_eq!(every_split(chunked), Err(FramingError::BareLf));
        let ended = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\n0\r\n\r\n";
        assert_eq!(every_split(ended), Err(FramingError::ChunkEnd));
    }

    #[test]
    fn only_exactly_chunked_and_one_agreeing_length() {
        let te = |value: &str| {
            let head = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {value}\r\n\r\n0\r\n\r\n");
            every_split(head.as_bytes())
        };
        assert_eq!(te("chunked"), Ok(()));
        assert_eq!(
            te("gzip, chunked"),
            Err(FramingError::TransferEncoding("gzip, chunked".into()))
        );
        assert_eq!(
            te("gzip"),
            Err(FramingError::TransferEncoding("gzip".into()))
        );
        assert_eq!(
            te("chunked, chunked"),
            Err(FramingError::TransferEncoding("chunked, chunked".into()))
        );
        let both = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(every_split(both), Err(FramingError::LengthAndChunked));
        let two =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            every_split(two),
            Err(FramingError::TransferEncoding(_))
        ));
        for length in ["+5", "5, 6", "", "0x5"] {
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {length}\r\n\r\n");
            assert_eq!(
                every_split(head.as_bytes()),
                Err(FramingError::ContentLength),
                "{length:?}"
            );
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', HEAD_BYTES_MAX));
        assert_eq!(check(&big, 4096), Err(FramingError::HeadTooLarge));
        let long = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\n",
            "e".repeat(CHUNK_LINE_BYTES_MAX)
        );
        assert_eq!(check(long.as_bytes(), 512), Err(FramingError::ChunkLine));
        assert_eq!(
            check(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n12345678901234567\r\n",
                9
            ),
            Err(FramingError::ChunkLine)
        );
    }
}
