//! The upstream response reader (`upstream::codec`) on arbitrary bytes read in arbitrary pieces.
//!
//! Input: one byte of options (bit 0: the answer to a HEAD), two bytes that choose two cut
//! positions, then the bytes the upstream sent.
//!
//! Invariants: nothing panics; the pieces give exactly what one read gives (head, body bytes,
//! how it ended, bytes left over), so where a response ends cannot depend on how TCP cut it; a
//! body that ended under a `Content-Length` has exactly that length; and the same bytes, sent as
//! chunks of the chosen sizes, decode back to themselves.
#![no_main]

use arcp_gateway::upstream::codec::{encode_chunk, read_in_pieces, LAST_CHUNK};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (options, rest) = data.split_at(data.len().min(1));
    let (choice, input) = rest.split_at(rest.len().min(2));
    let head_request = options.first().is_some_and(|o| o & 1 == 1);
    let whole = read_in_pieces(input, &[], head_request);
    if let (Some(head), Ok(true)) = (&whole.head, &whole.ended) {
        if let Some(n) = head
            .framing
            .strip_prefix("Length(")
            .and_then(|f| f.strip_suffix(')'))
        {
            assert_eq!(whole.body.len().to_string(), n, "length body");
        }
    }
    let mut cuts: Vec<usize> = choice
        .iter()
        .map(|&c| usize::from(c) * input.len() / 255)
        .collect();
    cuts.sort_unstable();
    assert_eq!(read_in_pieces(input, &cuts, head_request), whole, "cut at {cuts:?}");

    // Chunked round trip: the input as chunks of the chosen sizes.
    let mut response = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    let mut from = 0;
    for &c in choice.iter().cycle().take(input.len() + 1) {
        if from >= input.len() {
            break;
        }
        let to = (from + usize::from(c).max(1)).min(input.len());
        encode_chunk(&mut response, &input[from..to]);
        from = to;
    }
    response.extend_from_slice(LAST_CHUNK);
    let decoded = read_in_pieces(&response, &cuts, false);
    assert_eq!(decoded.body, input, "chunked round trip");
    assert_eq!((decoded.ended, decoded.left), (Ok(true), 0));
});
