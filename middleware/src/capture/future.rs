//! [`ResponseFuture`]: stamps the response head on the unfinished record and
//! hands the record's guard to the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::pending::Pending;

pin_project! {
    /// Response future of [`crate::Capture`].
    ///
    /// Dropped before the inner service answered (the client left), it drops
    /// the [`Pending`] guard, which records status 499.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, pending: Pending) -> Self {
        Self {
            inner,
            pending: Some(pending),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut pending) = this.pending.take() else {
            // Polled after completion; the inner future decides what that means.
            return Poll::Ready(result.map(|res| res.map(ResponseBody::untracked)));
        };
        Poll::Ready(match result {
            Ok(mut response) => {
                pending.respond(&mut response);
                Ok(response.map(|body| ResponseBody::new(body, pending)))
            }
            Err(e) => {
                pending.fail();
                Err(e)
            }
        })
    }
}
