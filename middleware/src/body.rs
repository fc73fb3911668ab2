//! The response body: counts the bytes sent and finishes the record when the
//! body ends, or when it is dropped early (a client that went away).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::future::Pending;

pin_project! {
    /// Response body of [`crate::Capture`].
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        pending: Option<Box<Pending>>,
        bytes_sent: u64,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                pending.finish(*this.bytes_sent);
            }
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, pending: Box<Pending>) -> Self {
        Self {
            inner,
            pending: Some(pending),
            bytes_sent: 0,
        }
    }

    pub(crate) fn untracked(inner: B) -> Self {
        Self {
            inner,
            pending: None,
            bytes_sent: 0,
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
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes_sent += data.remaining() as u64;
                }
                if this.inner.is_end_stream()
                    && let Some(pending) = this.pending.take()
                {
                    pending.finish(*this.bytes_sent);
                }
            }
            // End of body, or an error ending it: either way the record is done.
            None | Some(Err(_)) => {
                if let Some(pending) = this.pending.take() {
                    pending.finish(*this.bytes_sent);
                }
            }
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
