//! A minimal Kafka connection for protocol-level tests of the real binary: typed
//! requests and answers through the `kafka-protocol` crate, over a blocking socket with
//! timeouts, authenticated with SASL PLAIN.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// No answer takes longer than this (a long-polling Fetch asks for less).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A bound on one answer the tests read.
const ANSWER_BYTES_MAX: usize = 16 << 20;

pub struct KafkaConnection {
    stream: TcpStream,
    correlation_id: i32,
}

impl KafkaConnection {
    pub fn connect(address: &str) -> KafkaConnection {
        let stream = TcpStream::connect(address).expect("the Kafka listener accepts");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        KafkaConnection {
            stream,
            correlation_id: 0,
        }
    }

    /// Connects and logs in with SASL PLAIN as `user` / `password`.
    pub fn login(address: &str, user: &str, password: &str) -> KafkaConnection {
        let mut connection = KafkaConnection::connect(address);
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let answer: SaslHandshakeResponse = connection.call(1, &handshake);
        assert_eq!(answer.error_code, 0, "PLAIN is offered");
        let token = format!("\0{user}\0{password}");
        let authenticate =
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes()));
        let answer: SaslAuthenticateResponse = connection.call(2, &authenticate);
        assert_eq!(
            answer.error_code, 0,
            "logged in: {:?}",
            answer.error_message
        );
        connection
    }

    /// Sends `request` at `version` and reads its answer.
    pub fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
        let key = ApiKey::try_from(R::KEY).expect("a known API");
        let mut frame = vec![0; 4];
        header
            .encode(&mut frame, key.request_header_version(version))
            .unwrap();
        request.encode(&mut frame, version).unwrap();
        let length = i32::try_from(frame.len() - 4).unwrap();
        frame[..4].copy_from_slice(&length.to_be_bytes());
        self.stream.write_all(&frame).expect("the request is sent");
        let mut prefix = [0; 4];
        self.stream
            .read_exact(&mut prefix)
            .expect("an answer frame");
        let length = usize::try_from(i32::from_be_bytes(prefix)).expect("a positive length");
        assert!(length <= ANSWER_BYTES_MAX, "an answer of {length} bytes");
        let mut answer = vec![0; length];
        self.stream
            .read_exact(&mut answer)
            .expect("the whole answer");
        let mut bytes = Bytes::from(answer);
        let header = ResponseHeader::decode(&mut bytes, key.response_header_version(version))
            .expect("a response header");
        assert_eq!(header.correlation_id, self.correlation_id);
        R::Response::decode(&mut bytes, version).expect("an answer of the request's kind")
    }
}
