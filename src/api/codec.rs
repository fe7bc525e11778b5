//! The protobuf codec of `sessiond.v1.SessionService` (wired in by `build.rs`): tonic-prost's
//! encoder, and a decoder that answers a message that is not valid protobuf for its type with
//! `INVALID_ARGUMENT` (reason `MALFORMED_REQUEST`), where tonic-prost answers `INTERNAL`. The
//! caller sent the bad bytes; nothing failed inside the service.
//!
//! Only what reaches the codec can be answered here. tonic checks the gRPC framing before it:
//! a length prefix over the message limit is `OUT_OF_RANGE`, a bad compression flag, a body
//! that ends inside a message, or no message at all `INTERNAL`, an over-limit decompressed
//! message `RESOURCE_EXHAUSTED` (see the README's security section).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// tonic-prost's codec with [`ProtoDecoder`] in place of its decoder.
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U> {
    inner: ProstCodec<T, U>,
}

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self {
            inner: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder {
            _message: PhantomData,
        }
    }
}

/// Decodes one `U`; bytes that are not a valid `U` are `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct ProtoDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| super::status::malformed_message(&e))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
