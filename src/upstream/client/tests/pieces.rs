//! Answers whose head arrives in pieces: the first piece is parsed at once, the rest once a
//! blank line has arrived; cut anywhere, the answer is the same.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{client, get, one_connection, text};

/// An interim answer, then the final one with a body of two bytes.
const ANSWER: &[u8] =
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 2\r\n\r\nok";

/// Serves one request on one connection, writing `ANSWER` cut at `cuts`, each piece sent on
/// its own a few milliseconds after the last.
async fn answered_in_pieces(cuts: Vec<usize>) -> (StatusCode, String, String) {
    let server = one_connection(move |mut stream| async move {
        stream.set_nodelay(true).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let mut from = 0;
        for cut in cuts.into_iter().chain(std::iter::once(ANSWER.len())) {
            stream.write_all(&ANSWER[from..cut]).await.unwrap();
            stream.flush().await.unwrap();
            from = cut;
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        // Keep the connection open until the client is done with it.
        let _ = stream.read(&mut byte).await;
    })
    .await;
    let client = client(&server);
    let response = client.send(get(&client, "/p")).await.unwrap();
    let status = response.status();
    let field = response
        .body()
        .fields()
        .get_all("x-a")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    (status, field, text(response).await)
}

#[tokio::test]
async fn an_answer_head_cut_anywhere_is_read_whole() {
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n".len();
    let end = ANSWER.len() - 2;
    let mut cases: Vec<Vec<usize>> = vec![
        vec![],                     // all at once
        vec![5],                    // inside the first status line
        vec![interim - 2],          // between the interim answer's two line ends
        vec![interim],              // the interim answer alone, then the rest
        vec![interim + 3, end - 3], // inside the final status line, inside its blank line
        vec![end - 1],              // the last LF of the head apart
        vec![end],                  // the head, then the body
    ];
    // And every byte on its own.
    cases.push((1..ANSWER.len()).collect());
    for cuts in cases {
        let answer = answered_in_pieces(cuts.clone()).await;
        assert_eq!(
            answer,
            (StatusCode::OK, "1".to_owned(), "ok".to_owned()),
            "cut at {cuts:?}"
        );
    }
}
