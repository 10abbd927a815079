//! The response reader on bytes that arrive in arbitrary pieces (for the fuzz target).

use bytes::BytesMut;

use super::{parse_response, CodecError, Decoder, Step};

/// What the reader made of a response stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The head, if one was read.
    pub head: Option<Head>,
    /// The body bytes delivered.
    pub body: Vec<u8>,
    /// `Ok(true)`: the response ended; `Ok(false)`: it needs more than the input.
    pub ended: Result<bool, CodecError>,
    /// Bytes left unread after the response (0 after an error: the connection is dropped).
    pub left: usize,
}

/// A response head, in plain types.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub fields: Vec<(String, Vec<u8>)>,
    /// The framing, as `Debug` prints it (`Length(5)`, `Chunked`, ...).
    pub framing: String,
    pub keep_alive: bool,
}

/// Reads the response at the start of `data`, delivered in the pieces `cuts` makes; the
/// connection ends after the last byte.
#[doc(hidden)]
pub fn read_in_pieces(data: &[u8], cuts: &[usize], head_request: bool) -> Outcome {
    let mut buf = BytesMut::new();
    let mut head = None;
    let mut decoder: Option<Decoder> = None;
    let mut body = Vec::new();
    let mut ended = Ok(false);
    let mut from = 0;
    'feed: for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        let cut = cut.clamp(from, data.len());
        buf.extend_from_slice(&data[from..cut]);
        from = cut;
        loop {
            let reader = match decoder.as_mut() {
                Some(reader) => reader,
                None => match parse_response(&mut buf, head_request) {
                    Ok(Some(h)) => {
                        let fields = h
                            .fields
                            .iter()
                            .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
                            .collect();
                        let framing = format!("{:?}", h.framing);
                        head = Some(Head {
                            status: h.status.as_u16(),
                            fields,
                            framing,
                            keep_alive: h.keep_alive,
                        });
                        decoder.insert(Decoder::new(h.framing))
                    }
                    Ok(None) => break,
                    Err(e) => {
                        ended = Err(e);
                        break 'feed;
                    }
                },
            };
            match reader.decode(&mut buf) {
                Ok(Step::Data(data)) => {
                    assert!(!data.is_empty(), "an empty data piece");
                    body.extend_from_slice(&data);
                }
                Ok(Step::More) => break,
                Ok(Step::End) => {
                    ended = Ok(true);
                    break 'feed;
                }
                Err(e) => {
                    ended = Err(e);
                    break 'feed;
                }
            }
        }
    }
    if ended == Ok(false) {
        if let Some(reader) = decoder.as_mut() {
            ended = reader.eof().map(|step| step == Step::End);
        }
    }
    buf.extend_from_slice(&data[from..]);
    let left = if ended.is_ok() { buf.len() } else { 0 };
    Outcome {
        head,
        body,
        ended,
        left,
    }
}
