//! [`ResponseBody`]: counts the bytes sent and finishes the record when the
//! body ends. Dropped early (a client that went away), it drops the record's
//! [`Pending`] guard, which finishes the record too.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::pending::Pending;

pin_project! {
    /// Response body of [`crate::Capture`].
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, pending: Pending) -> Self {
        Self {
            inner,
            pending: Some(pending),
        }
    }

    pub(crate) fn untracked(inner: B) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some(pending)) = (frame.data_ref(), this.pending.as_mut()) {
                    pending.sent(data.remaining());
                }
                this.inner.is_end_stream()
            }
            // End of body, or an error ending it: either way the record is done.
            None | Some(Err(_)) => true,
        };
        if ended && let Some(pending) = this.pending.take() {
            pending.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
