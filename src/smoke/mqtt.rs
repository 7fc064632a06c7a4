//! The few MQTT 3.1.1 packets `smoke` needs as a device: CONNECT, PUBLISH (QoS 1) and
//! DISCONNECT out, CONNACK and PUBACK in (OASIS MQTT Version 3.1.1, sections 2 and 3). AWS IoT
//! Core's message broker speaks MQTT 3.1.1 on port 8883 (and 443 with ALPN).
//!
//! Our own codec rather than an MQTT client crate: the well-kept client (rumqttc 0.25) brings a
//! second certificate verifier (rustls-webpki 0.102 beside the tree's 0.103) and its own event
//! loop, which hides what `smoke` must see: which connection attempt was dropped, and when.

use std::fmt;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest packet `smoke` accepts from the broker (CONNACK and PUBACK are 4 bytes; AWS IoT
/// may send a PUBLISH we did not ask for, never near this).
const MAX_INCOMING: usize = 128 * 1024;

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const DISCONNECT: u8 = 14;

/// A packet from the broker, decoded as far as `smoke` cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// CONNACK: the return code (0 accepted) and the session-present flag.
    ConnAck { code: u8, session_present: bool },
    /// PUBACK for a QoS 1 PUBLISH.
    PubAck { packet_id: u16 },
    /// Any other packet type (e.g. a PUBLISH from a subscription we never made).
    Other { packet_type: u8 },
}

/// A malformed packet or a packet that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MQTT: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// What a CONNACK return code means (MQTT 3.1.1, 3.2.2.3).
pub fn connack_reason(code: u8) -> &'static str {
    match code {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown return code",
    }
}

/// CONNECT with a clean session, no will, no user name or password.
pub fn connect(client_id: &str, keep_alive_secs: u16) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, "MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(0x02); // clean session
    body.extend_from_slice(&keep_alive_secs.to_be_bytes());
    put_str(&mut body, client_id);
    packet(CONNECT << 4, &body)
}

/// PUBLISH at QoS 1 (not a duplicate, not retained).
pub fn publish_qos1(topic: &str, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic);
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.extend_from_slice(payload);
    packet((PUBLISH << 4) | 0x02, &body)
}

/// DISCONNECT.
pub fn disconnect() -> Vec<u8> {
    packet(DISCONNECT << 4, &[])
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Reads one packet. `Ok(None)`: the connection ended cleanly before a packet began.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Incoming>> {
    let mut first = [0u8; 1];
    if r.read(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut len = 0usize;
    for i in 0..4 {
        let byte = r.read_u8().await?;
        len |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(invalid("remaining length longer than 4 bytes"));
        }
    }
    if len > MAX_INCOMING {
        return Err(invalid(&format!("a {len}-byte packet")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(first[0], &body).map(Some).map_err(|e| invalid(&e.0))
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        ProtocolError(what.to_string()),
    )
}

/// Decodes a packet from its first byte and body.
pub fn decode(first: u8, body: &[u8]) -> Result<Incoming, ProtocolError> {
    let packet_type = first >> 4;
    match packet_type {
        CONNACK | PUBACK if body.len() != 2 => Err(ProtocolError(format!(
            "packet type {packet_type} with {} bytes (2 expected)",
            body.len()
        ))),
        CONNACK => Ok(Incoming::ConnAck {
            session_present: body[0] & 1 == 1,
            code: body[1],
        }),
        PUBACK => Ok(Incoming::PubAck {
            packet_id: u16::from_be_bytes([body[0], body[1]]),
        }),
        0 | 15 => Err(ProtocolError(format!("reserved packet type {packet_type}"))),
        _ => Ok(Incoming::Other { packet_type }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_is_the_3_1_1_packet_with_a_clean_session() {
        let p = connect("dev-1", 30);
        let want: Vec<u8> = [
            &[0x10, 17][..],
            &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30],
            &[0, 5],
            b"dev-1",
        ]
        .concat();
        assert_eq!(p, want);
    }

    #[test]
    fn publish_qos1_carries_topic_packet_id_and_payload() {
        let p = publish_qos1("a/b", 0x0102, b"hi");
        assert_eq!(p, vec![0x32, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'h', b'i']);
        assert_eq!(disconnect(), vec![0xe0, 0]);
    }

    #[test]
    fn long_bodies_get_a_multi_byte_remaining_length() {
        let payload = vec![7u8; 200];
        let p = publish_qos1("t", 1, &payload);
        // 2 + 1 + 2 + 200 = 205 = 0x4d + 1 * 128
        assert_eq!(&p[..3], &[0x32, 0xcd, 0x01]);
        assert_eq!(p.len(), 3 + 205);
    }

    #[tokio::test]
    async fn reads_connack_and_puback_and_reports_the_rest() {
        let bytes: Vec<u8> = [
            &[0x20, 2, 0, 0][..],
            &[0x20, 2, 1, 5],
            &[0x40, 2, 0, 9],
            &[0xd0, 0], // PINGRESP
        ]
        .concat();
        let mut r = &bytes[..];
        let mut got = Vec::new();
        while let Some(p) = read(&mut r).await.unwrap() {
            got.push(p);
        }
        assert_eq!(
            got,
            vec![
                Incoming::ConnAck {
                    code: 0,
                    session_present: false
                },
                Incoming::ConnAck {
                    code: 5,
                    session_present: true
                },
                Incoming::PubAck { packet_id: 9 },
                Incoming::Other { packet_type: 13 },
            ]
        );
        assert_eq!(connack_reason(5), "not authorized");
    }

    #[tokio::test]
    async fn malformed_packets_are_errors_not_guesses() {
        for bad in [
            &[0x20, 3, 0, 0, 0][..],            // CONNACK of 3 bytes
            &[0x00, 0],                         // reserved type
            &[0x30, 0xff, 0xff, 0xff, 0xff, 1], // 5-byte length
            &[0x20, 2, 0],                      // cut short
        ] {
            let mut r = bad;
            assert!(read(&mut r).await.is_err(), "{bad:?}");
        }
    }
}
