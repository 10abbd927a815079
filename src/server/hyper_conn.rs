//! hyper's side of a client connection: HTTP/2 from the start, HTTP/1.1 from the first request
//! the gateway's own loop (`server::h1`) hands over.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::activity::{Activity, Tracked};
use super::framing::{HeadLog, Scanned};
use super::h1::serve::Closing;
use crate::pipeline::{self, ConnSlot, State};
use crate::proxy::ConnInfo;

/// What hyper serves a connection with, from the request the gateway's own loop handed over
/// (or from the start: HTTP/2).
pub(super) struct Hyper {
    pub(super) state: Arc<State>,
    pub(super) info: Arc<ConnInfo>,
    pub(super) slot: ConnSlot,
    pub(super) activity: Activity,
    pub(super) builder: Arc<super::Builders>,
}

impl Hyper {
    /// Serves `io` with hyper; `handed` is `Some((read, served))` when the gateway's own loop
    /// handed the connection over with the bytes it `read` (beginning with a head it counted
    /// as begun) after serving `served` requests: then HTTP/1.1 only, unless nothing was
    /// served yet (the first bytes may be the HTTP/2 preface). `http1` false (TLS chose `h2`):
    /// HTTP/2 only. Asks hyper to close gracefully once `closing` is set.
    pub(super) async fn serve<S>(
        self,
        io: S,
        http1: bool,
        handed: Option<(Bytes, u64)>,
        closing: &Closing,
    ) -> Result<(), crate::body::BoxError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Hyper {
            state,
            info,
            slot,
            activity,
            builder,
        } = self;
        let heads = Arc::new(HeadLog::default());
        let service = {
            let (heads, activity) = (heads.clone(), activity.clone());
            service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let state = state.clone();
                let slot = slot.clone();
                let info = info.clone();
                let in_flight = activity.begin();
                let framing = heads.next_request();
                async move {
                    let req = req.map(crate::body::Inbound::from);
                    let mut response = pipeline::handle(state, &info, &slot, req, framing).await;
                    if let Some(fields) = response.body_mut().take_upstream_fields() {
                        crate::proxy::headers::fields_into_map(response.headers_mut(), fields);
                    }
                    Ok::<_, std::convert::Infallible>(response.map(|b| Tracked::new(b, in_flight)))
                }
            })
        };
        let (read, served) = handed.unwrap_or_default();
        let io = TokioIo::new(Scanned::new(io, http1, heads, activity).resumed(read));
        if !http1 {
            // `serve_connection` (unlike `serve_connection_with_upgrades`) keeps to the
            // builder's one version; HTTP/2 needs no HTTP/1.1 upgrade support.
            let connection = builder.http2.serve_connection(io, service);
            return drive(connection, |c| c.graceful_shutdown(), closing).await;
        }
        match served {
            // hyper-util's builder reads the version even when told HTTP/1.1 only (with
            // upgrades): hyper's own HTTP/1.1 connection, so that a preface in the middle of
            // the connection is not taken for HTTP/2.
            1.. => {
                let connection = builder.http1.serve_connection(io, service).with_upgrades();
                let graceful = |c: Pin<&mut _>| {
                    hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(c)
                };
                Ok(drive(connection, graceful, closing).await?)
            }
            _ => {
                let connection = builder.any.serve_connection_with_upgrades(io, service);
                drive(connection, |c| c.graceful_shutdown(), closing).await
            }
        }
    }
}

/// Drives `connection` to its end, asking it to close gracefully once `closing` is set.
async fn drive<C, T, E>(
    connection: C,
    graceful: impl Fn(Pin<&mut C>),
    closing: &Closing,
) -> Result<T, E>
where
    C: Future<Output = Result<T, E>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut asked = false;
    std::future::poll_fn(|cx| {
        if !asked && closing.asked() {
            asked = true;
            graceful(connection.as_mut());
        }
        connection.as_mut().poll(cx)
    })
    .await
}
