//! hyper's side of a client connection: HTTP/2 from the start, HTTP/1.1 from the first request
//! the gateway's own loop (`server::h1`) hands over.

use std::future::Future;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
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
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
}

impl Hyper {
    /// Serves `io` with hyper; `counted` heads at its front were counted as begun already.
    /// Asks hyper to close gracefully once `closing` is set.
    pub(super) async fn serve<S>(
        self,
        io: S,
        http1: bool,
        counted: u64,
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
                    let response = pipeline::handle(state, &info, &slot, req, framing).await;
                    Ok::<_, std::convert::Infallible>(response.map(|b| Tracked::new(b, in_flight)))
                }
            })
        };
        let io = TokioIo::new(Scanned::new(io, http1, heads, activity).counted(counted));
        let connection = builder.serve_connection_with_upgrades(io, service);
        let mut connection = std::pin::pin!(connection);
        let mut asked = false;
        std::future::poll_fn(|cx| {
            if !asked && closing.asked() {
                asked = true;
                connection.as_mut().graceful_shutdown();
            }
            connection.as_mut().poll(cx)
        })
        .await
    }
}
