//! The gRPC entrance: the tower layer that admits every request through the
//! [`Authenticator`] before any service sees it, puts the caller in the request's extensions
//! (for audit) and holds its in-flight slot until the response is made. A refusal is answered
//! here, as the `Status` `api::status` renders.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;

use crate::auth::{Authenticator, Budget, CertSubject};

/// The tower layer that puts an [`Authenticator`] in front of every gRPC service.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer over `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

/// The subject of the verified client certificate of a TLS connection, when the client
/// presented one.
fn client_cert_subject(extensions: &http::Extensions) -> Option<CertSubject> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    CertSubject::from_der(certs.first()?.as_ref())
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let subject = client_cert_subject(req.extensions());
        let admitted = self.auth.admit(
            req.uri().path(),
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            subject.as_ref(),
        );
        // Who the caller is decides the budget: the slot comes after authentication.
        let budget = match admitted {
            Ok(Some(caller)) => {
                req.extensions_mut().insert(caller);
                Budget::Callers
            }
            Ok(None) => Budget::Open,
            Err(refusal) => {
                let status = Status::from(refusal);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        let permit = match self.auth.slot(budget) {
            Ok(permit) => permit,
            Err(refusal) => {
                let status = Status::from(refusal);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        // The clone is ready (tower's usual swap), the original stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(req).await;
            drop(permit);
            response
        })
    }
}
