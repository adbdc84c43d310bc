//! How the table reaches the holders of an item: from the local node ([`Local`], no
//! connection to itself) or through a client connection ([`Lane`]).

use super::*;

/// How requests reach the ring: from a node inside it, or from a client through one. A
/// transfer runs several routes at once (one request in flight on each).
pub(crate) trait Route: Send {
    /// The `k` holders of ring position `id`, owner first (`fresh`: not from a cache,
    /// after a cached answer turned out wrong).
    fn locate(
        &mut self,
        id: Id,
        k: u8,
        fresh: bool,
    ) -> impl Future<Output = Result<Vec<Peer>, FilesError>> + Send;
    /// Ask the files service at `to`; an `Error` answer comes back as `Err`.
    fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> impl Future<Output = Result<FilesResponse, FilesError>> + Send;
    /// Ask each `(to, request)` at once (distinct addresses); the answers in the same
    /// order. A read asks its `k` holders this way: one wait for all of them, not `k`
    /// one after another.
    fn ask_each(
        &mut self,
        asks: Vec<(SocketAddr, FilesRequest)>,
    ) -> impl Future<Output = Vec<Result<FilesResponse, FilesError>>> + Send {
        async move {
            let mut answers = Vec::with_capacity(asks.len());
            for (to, req) in &asks {
                answers.push(self.ask(*to, req).await);
            }
            answers
        }
    }
    /// A buffer the caller is done with, to read a later answer into.
    fn recycle(&mut self, buf: Vec<u8>) {
        let _ = buf;
    }
    /// Records whose signature this route already checked, if it keeps them.
    fn verified(&mut self) -> Option<&mut Verified> {
        None
    }
}

/// The BLAKE3 hashes of the last [`Verified::CAPACITY`] record encodings whose signature
/// a client checked: a record read again unchanged (the same bytes, so the same position,
/// sequence and signature) is not verified again. Checking a signature is most of what a
/// read costs a client.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    pub(crate) order: std::collections::VecDeque<Hash>,
    set: std::collections::HashSet<Hash>,
}

impl Verified {
    const CAPACITY: usize = 1024;

    pub(crate) fn contains(&self, h: &Hash) -> bool {
        self.set.contains(h)
    }

    pub(crate) fn insert(&mut self, h: Hash) {
        if !self.set.insert(h) {
            return;
        }
        if self.order.len() >= Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(h);
    }
}

/// A node's own route: its lookups, and its calls (a call to itself stays inside).
pub(crate) struct Local<'a>(pub(crate) &'a chord_net::Node);

impl Route for Local<'_> {
    async fn locate(&mut self, id: Id, k: u8, _fresh: bool) -> Result<Vec<Peer>, FilesError> {
        Ok(crate::maintain::locate(self.0, id, k).await?.1)
    }

    async fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> Result<FilesResponse, FilesError> {
        match crate::maintain::ask(self.0, to, req).await? {
            FilesResponse::Error(e) => Err(e.into()),
            r => Ok(r),
        }
    }

    async fn ask_each(
        &mut self,
        asks: Vec<(SocketAddr, FilesRequest)>,
    ) -> Vec<Result<FilesResponse, FilesError>> {
        let node = self.0;
        futures::future::join_all(asks.iter().map(|(to, req)| async move {
            match crate::maintain::ask(node, *to, req).await? {
                FilesResponse::Error(e) => Err(e.into()),
                r => Ok(r),
            }
        }))
        .await
    }
}

impl Route for Lane {
    async fn locate(&mut self, id: Id, k: u8, fresh: bool) -> Result<Vec<Peer>, FilesError> {
        Lane::locate(self, id, k, fresh).await
    }

    async fn ask(
        &mut self,
        to: SocketAddr,
        req: &FilesRequest,
    ) -> Result<FilesResponse, FilesError> {
        Lane::ask(self, to, req).await
    }

    async fn ask_each(
        &mut self,
        asks: Vec<(SocketAddr, FilesRequest)>,
    ) -> Vec<Result<FilesResponse, FilesError>> {
        Lane::ask_each(self, asks).await
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.spare = buf;
    }

    fn verified(&mut self) -> Option<&mut Verified> {
        Some(&mut self.verified)
    }
}
