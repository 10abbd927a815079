use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::body::BoxError;

type Item = Result<Frame<Bytes>, BoxError>;

fn ready(parts: Vec<Item>) -> StreamBody<impl futures_util::Stream<Item = Item>> {
    StreamBody::new(futures_util::stream::iter(parts))
}

fn data(bytes: &[u8]) -> Item {
    Ok(Frame::data(Bytes::copy_from_slice(bytes)))
}

/// Writes `body` after a head as [`write_body`] does, then what it left in the buffer, as the
/// loop does; returns whether the body was complete and every byte written.
async fn written<B>(body: B, framing: Framing) -> (bool, Vec<u8>)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
    let mut out = b"HEAD\r\n\r\n".to_vec();
    let complete = write_body(&mut ours, &mut out, body, framing, || {})
        .await
        .unwrap();
    ours.write_all(&out).await.unwrap();
    drop(ours);
    let mut bytes = Vec::new();
    theirs.read_to_end(&mut bytes).await.unwrap();
    (complete, bytes)
}

#[tokio::test]
async fn chunked_bodies_are_framed_chunk_by_chunk_large_pieces_included() {
    let large = vec![b'x'; COALESCE + 1];
    let body = ready(vec![data(b"a"), data(&large), data(b""), data(b"bc")]);
    let (complete, bytes) = written(body, Framing::Chunked).await;
    assert!(complete);
    let mut expected = b"HEAD\r\n\r\n1\r\na\r\n".to_vec();
    expected.extend_from_slice(format!("{:x}\r\n", large.len()).as_bytes());
    expected.extend_from_slice(&large);
    expected.extend_from_slice(b"\r\n2\r\nbc\r\n0\r\n\r\n");
    assert_eq!(bytes, expected);
}

#[tokio::test]
async fn a_length_body_is_written_as_it_is_and_must_match_its_length() {
    let (complete, bytes) = written(ready(vec![data(b"a"), data(b"bc")]), Framing::Length(3)).await;
    assert!(complete);
    assert_eq!(bytes, b"HEAD\r\n\r\nabc");

    let (complete, _) = written(ready(vec![data(b"ab")]), Framing::Length(3)).await;
    assert!(!complete, "shorter than its length");
    let (complete, bytes) =
        written(ready(vec![data(b"ab"), data(b"cd")]), Framing::Length(3)).await;
    assert!(!complete, "longer than its length");
    assert_eq!(bytes, b"HEAD\r\n\r\nab", "nothing past the length");
}

#[tokio::test]
async fn a_failing_body_cuts_the_response() {
    let failing = ready(vec![data(b"a"), Err("upstream reset".into())]);
    let (complete, bytes) = written(failing, Framing::Chunked).await;
    assert!(!complete);
    assert_eq!(bytes, b"HEAD\r\n\r\n1\r\na\r\n", "no last chunk");
}

#[tokio::test]
async fn a_body_without_one_is_not_read() {
    let (complete, bytes) =
        written(ready(vec![Err("must not be polled".into())]), Framing::None).await;
    assert!(complete);
    assert_eq!(bytes, b"HEAD\r\n\r\n");
}

/// What is ready goes out before the loop waits for a slow body: the client has the head
/// (and the first piece) while the rest is still on its way.
#[tokio::test]
async fn what_came_before_a_slow_piece_is_written_before_waiting_for_it() {
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(1);
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let (mut ours, mut theirs) = tokio::io::duplex(1 << 16);
    let writing = async move {
        let mut out = b"HEAD\r\n\r\n".to_vec();
        let complete = write_body(&mut ours, &mut out, body, Framing::Chunked, || {})
            .await
            .unwrap();
        ours.write_all(&out).await.unwrap();
        complete
    };
    let reading = async move {
        let mut head = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(10), theirs.read_exact(&mut head))
            .await
            .expect("the head is written while the body waits")
            .unwrap();
        assert_eq!(&head, b"HEAD\r\n\r\n");
        tx.send(data(b"late")).await.unwrap();
        drop(tx);
        let mut rest = Vec::new();
        theirs.read_to_end(&mut rest).await.unwrap();
        rest
    };
    let (complete, rest) = tokio::join!(writing, reading);
    assert!(complete);
    assert_eq!(rest, b"4\r\nlate\r\n0\r\n\r\n");
}

/// The request stops being in flight once its body has ended (or is not sent), not once
/// the client has read it all: a client that stops reading then is held to the deadlines.
#[tokio::test]
async fn the_body_is_reported_ended_once_when_it_ends() {
    for (framing, parts, calls) in [
        (Framing::Chunked, vec![data(b"a"), data(b"b")], 1),
        (Framing::Length(2), vec![data(b"ab")], 1),
        (Framing::None, vec![data(b"ab")], 1),
        (Framing::Chunked, vec![data(b"a"), Err("reset".into())], 0),
    ] {
        let ended = std::cell::Cell::new(0);
        let (mut ours, _theirs) = tokio::io::duplex(1 << 16);
        let mut out = Vec::new();
        write_body(&mut ours, &mut out, ready(parts), framing, || {
            ended.set(ended.get() + 1)
        })
        .await
        .unwrap();
        assert_eq!(ended.get(), calls, "{framing:?}");
    }
}

/// Many small pieces ready at once do not pile up in the write buffer.
#[tokio::test]
async fn ready_pieces_are_written_as_the_buffer_fills() {
    let piece = vec![b'x'; 1000];
    let parts = (0..500).map(|_| data(&piece)).collect();
    let (mut ours, mut theirs) = tokio::io::duplex(1 << 16);
    let reader = async move {
        let mut all = Vec::new();
        theirs.read_to_end(&mut all).await.unwrap();
        all.len()
    };
    let writer = async move {
        let mut out = Vec::new();
        let complete = write_body(
            &mut ours,
            &mut out,
            ready(parts),
            Framing::Length(500_000),
            || {},
        )
        .await
        .unwrap();
        assert!(complete);
        assert!(
            out.capacity() <= 2 * COALESCE,
            "buffer grew to {}",
            out.capacity()
        );
        ours.write_all(&out).await.unwrap();
    };
    let ((), read) = tokio::join!(writer, reader);
    assert_eq!(read, 500_000);
}
