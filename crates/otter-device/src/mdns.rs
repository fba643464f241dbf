//! mDNS answers of a device on a chip (feature `mdns`): the services the
//! virtual device publishes through `otter-agent`'s advertiser, as
//! [edge-mdns] records, so `otter discover`, the Arduino IDE and ESPHome's
//! dashboard find a board:
//!
//! | type | port | TXT |
//! |---|---|---|
//! | `_otter._tcp` | the OTA port | `otter` (layout [`TXT_VERSION`]), `chip`, `version`, `project`, `api`, `update`, `auth` (`token`/`none`) |
//! | `_http._tcp` | the web UI's port | `path=/` |
//! | `_arduino._tcp` | the OTA port | `board`, `tcp_check=no`, `ssh_upload=no`, `auth_upload` (`yes`/`no`) |
//! | `_esphomelib._tcp` | the OTA port | `platform=ESP32`, `board`, `version` |
//!
//! [`Advert::answer`] turns one received datagram into the reply to send
//! (to the mDNS group, or to the sender of a legacy one-shot query, whose
//! source port is not 5353), [`Advert::announce`] makes the unsolicited
//! announcement sent after the link comes up. Sans-IO: the caller owns the
//! UDP socket (joined to 224.0.0.251:5353).
//!
//! [edge-mdns]: https://crates.io/crates/edge-mdns

use core::net::{Ipv4Addr, Ipv6Addr};

use edge_mdns::domain::base::{Rtype, Ttl};
use edge_mdns::host::{Host, Service, ServiceAnswers};
use edge_mdns::{HostAnswer, HostAnswers, HostAnswersMdnsHandler, MdnsHandler, MdnsRequest};
use edge_mdns::{MdnsError as EdgeError, MdnsResponse};

/// The version of the `_otter._tcp` TXT layout (TXT key `otter`).
pub const TXT_VERSION: &str = "1";
/// The UDP port of mDNS.
pub const PORT: u16 = 5353;
/// The IPv4 group of mDNS.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// A reply buffer this long holds every answer of [`Advert`].
pub const MAX_REPLY: usize = 1500;

/// What a device publishes about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert<'a> {
    /// The service instance name, e.g. `otter-3f2a`.
    pub instance: &'a str,
    /// The host name (without `.local`), e.g. `otter-3f2a`.
    pub hostname: &'a str,
    /// The device's IPv4 address.
    pub ipv4: Ipv4Addr,
    /// The OTA port (the device API, ESPHome and espota).
    pub port: u16,
    /// The web UI's HTTP port for `_http._tcp`; `None`: not published.
    pub http_port: Option<u16>,
    /// The chip the running firmware is built for, e.g. `esp32c3`.
    pub chip: &'a str,
    /// The running firmware's version (app descriptor).
    pub version: &'a str,
    /// The running firmware's project name (app descriptor).
    pub project: &'a str,
    /// Whether the HTTP API needs a bearer token.
    pub auth: bool,
    /// `_arduino._tcp` with whether espota uploads need a password;
    /// `None`: not published (espota off).
    pub arduino: Option<bool>,
    /// `_esphomelib._tcp` (ESPHome OTA on).
    pub esphome: bool,
}

/// Why no reply could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MdnsError {
    /// The reply buffer is too small (give it [`MAX_REPLY`] bytes).
    #[error("the mDNS reply does not fit its buffer of {0} bytes")]
    Buffer(usize),
    /// The datagram is not a DNS message.
    #[error("the datagram is not a DNS message")]
    Malformed,
}

impl MdnsError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Buffer(_) => "mdns_buffer",
            Self::Malformed => "mdns_malformed",
        }
    }
}

/// Every service of one advert, answering together.
struct Answers<'a> {
    host: Host<'a>,
    services: [Option<Service<'a>>; 4],
}

impl HostAnswers for Answers<'_> {
    fn visit<F, E>(&self, mut f: F) -> Result<(), E>
    where
        F: FnMut(HostAnswer) -> Result<(), E>,
        E: From<EdgeError>,
    {
        // Each service carries the host's A record: send it once.
        let mut address_sent = false;
        for s in self.services.iter().flatten() {
            ServiceAnswers::new(&self.host, s).visit(|a: HostAnswer| {
                if a.rtype() == Rtype::A {
                    if address_sent {
                        return Ok(());
                    }
                    address_sent = true;
                }
                f(a)
            })?;
        }
        Ok(())
    }
}

impl Advert<'_> {
    fn with_answers<R>(&self, f: impl FnOnce(&Answers<'_>) -> R) -> R {
        let auth = if self.auth { "token" } else { "none" };
        let otter_txt = [
            ("otter", TXT_VERSION),
            ("chip", self.chip),
            ("version", self.version),
            ("project", self.project),
            ("api", "/api/ota/status"),
            ("update", "/update"),
            ("auth", auth),
        ];
        let http_txt = [("path", "/")];
        let upload = match self.arduino {
            Some(true) => "yes",
            _ => "no",
        };
        let arduino_txt = [
            ("board", self.chip),
            ("tcp_check", "no"),
            ("ssh_upload", "no"),
            ("auth_upload", upload),
        ];
        let esphome_txt = [
            ("platform", "ESP32"),
            ("board", self.chip),
            ("version", self.version),
        ];
        let service = |service, port, txt_kvs| Service {
            name: self.instance,
            priority: 0,
            weight: 0,
            service,
            protocol: "_tcp",
            port,
            service_subtypes: &[],
            txt_kvs,
        };
        let answers = Answers {
            host: Host {
                hostname: self.hostname,
                ipv4: self.ipv4,
                ipv6: Ipv6Addr::UNSPECIFIED,
                ttl: Ttl::from_secs(120),
            },
            services: [
                Some(service("_otter", self.port, &otter_txt)),
                self.http_port.map(|p| service("_http", p, &http_txt)),
                self.arduino
                    .map(|_| service("_arduino", self.port, &arduino_txt)),
                self.esphome
                    .then(|| service("_esphomelib", self.port, &esphome_txt)),
            ],
        };
        f(&answers)
    }

    fn run(&self, request: MdnsRequest<'_>, out: &mut [u8]) -> Result<Option<usize>, MdnsError> {
        let len = out.len();
        let at = out.as_ptr() as usize;
        self.with_answers(|a| {
            match HostAnswersMdnsHandler::new(a).handle(request, out) {
                Ok(MdnsResponse::None) => Ok(None),
                // The reply is a prefix of `out`.
                Ok(MdnsResponse::Reply { data, .. }) => {
                    debug_assert_eq!(data.as_ptr() as usize, at);
                    Ok(Some(data.len()))
                }
                Err(EdgeError::ShortBuf) => Err(MdnsError::Buffer(len)),
                Err(_) => Err(MdnsError::Malformed),
            }
        })
    }

    /// The reply to the datagram `query` (received from a source port
    /// other than 5353 when `legacy`): its length in `out`, or `None` when
    /// nothing of this device was asked (or the datagram is a response).
    pub fn answer(
        &self,
        query: &[u8],
        legacy: bool,
        out: &mut [u8],
    ) -> Result<Option<usize>, MdnsError> {
        self.run(
            MdnsRequest::Request {
                legacy,
                multicast: true,
                data: query,
            },
            out,
        )
    }

    /// Every record of this device, unsolicited (sent to the group when the
    /// link comes up, and again a second later, RFC 6762 §8.3).
    pub fn announce(&self, out: &mut [u8]) -> Result<usize, MdnsError> {
        self.run(MdnsRequest::None, out).map(|n| n.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_mdns::domain::base::{Message, MessageBuilder};
    use edge_mdns::domain::rdata::AllRecordData;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn advert() -> Advert<'static> {
        Advert {
            instance: "otter-3f2a",
            hostname: "otter-3f2a",
            ipv4: Ipv4Addr::new(192, 168, 1, 50),
            port: 3232,
            http_port: Some(80),
            chip: "esp32c3",
            version: "1.2.3",
            project: "otter-firmware",
            auth: false,
            arduino: Some(true),
            esphome: true,
        }
    }

    fn query(name: &[&str], qtype: Rtype) -> Vec<u8> {
        let mut raw = [0u8; 512];
        let mut b = MessageBuilder::from_target(edge_mdns::Buf::new(&mut raw))
            .unwrap()
            .question();
        b.push((edge_mdns::NameSlice::new(name), qtype)).unwrap();
        let buf = b.finish();
        let n = buf.1;
        raw[..n].to_vec()
    }

    /// (owner, type, rdata as text) of every record of a reply.
    fn records(reply: &[u8]) -> Vec<(String, String, String)> {
        let m = Message::from_octets(reply).unwrap();
        let mut v = Vec::new();
        for sec in [m.answer().unwrap(), m.additional().unwrap()] {
            for r in sec {
                let r = r
                    .unwrap()
                    .into_record::<AllRecordData<_, _>>()
                    .unwrap()
                    .unwrap();
                v.push((
                    r.owner().to_string(),
                    r.rtype().to_string(),
                    r.data().to_string(),
                ));
            }
        }
        v
    }

    #[test]
    fn a_ptr_query_for_otter_gets_the_instance_its_srv_txt_and_address() {
        let mut out = [0u8; MAX_REPLY];
        let q = query(&["_otter", "_tcp", "local"], Rtype::PTR);
        let n = advert().answer(&q, false, &mut out).unwrap().unwrap();
        let recs = records(&out[..n]);
        assert!(
            recs.contains(&(
                "_otter._tcp.local".into(),
                "PTR".into(),
                "otter-3f2a._otter._tcp.local.".into()
            )),
            "{recs:#?}"
        );
        assert!(
            recs.contains(&(
                "otter-3f2a._otter._tcp.local".into(),
                "SRV".into(),
                "0 0 3232 otter-3f2a.local".into()
            )),
            "{recs:#?}"
        );
        let a: Vec<_> = recs.iter().filter(|r| r.1 == "A").collect();
        assert_eq!(
            a,
            [&(
                "otter-3f2a.local".to_string(),
                "A".to_string(),
                "192.168.1.50".to_string()
            )],
            "one address record: {recs:#?}"
        );
        let txt = recs
            .iter()
            .find(|r| r.0 == "otter-3f2a._otter._tcp.local" && r.1 == "TXT")
            .expect("the otter TXT record");
        for kv in [
            "otter=1",
            "chip=esp32c3",
            "version=1.2.3",
            "project=otter-firmware",
            "api=/api/ota/status",
            "update=/update",
            "auth=none",
        ] {
            assert!(txt.2.contains(kv), "{kv} in {}", txt.2);
        }
        let ard = recs
            .iter()
            .find(|r| r.0 == "otter-3f2a._arduino._tcp.local" && r.1 == "TXT")
            .expect("the arduino TXT record");
        for kv in [
            "board=esp32c3",
            "tcp_check=no",
            "ssh_upload=no",
            "auth_upload=yes",
        ] {
            assert!(ard.2.contains(kv), "{kv} in {}", ard.2);
        }
        assert!(
            recs.contains(&(
                "otter-3f2a._http._tcp.local".into(),
                "SRV".into(),
                "0 0 80 otter-3f2a.local".into()
            )),
            "{recs:#?}"
        );
    }

    #[test]
    fn services_that_are_off_are_not_published_and_foreign_queries_get_nothing() {
        let off = Advert {
            arduino: None,
            esphome: false,
            http_port: None,
            ..advert()
        };
        let mut out = [0u8; MAX_REPLY];
        let n = off.announce(&mut out).unwrap();
        let recs = records(&out[..n]);
        assert!(
            recs.iter().all(|r| !r.0.contains("_arduino")
                && !r.0.contains("_esphomelib")
                && !r.0.contains("_http")),
            "{recs:#?}"
        );
        assert!(recs.iter().any(|r| r.0 == "_otter._tcp.local"), "{recs:#?}");
        let q = query(&["_arduino", "_tcp", "local"], Rtype::PTR);
        assert_eq!(off.answer(&q, false, &mut out), Ok(None));
        let q = query(&["_printer", "_tcp", "local"], Rtype::PTR);
        assert_eq!(advert().answer(&q, false, &mut out), Ok(None));
    }

    #[test]
    fn bad_input_and_small_buffers_are_typed_errors() {
        let mut out = [0u8; MAX_REPLY];
        let e = advert().answer(b"\x00\x01", false, &mut out).unwrap_err();
        assert_eq!((e, e.code()), (MdnsError::Malformed, "mdns_malformed"));
        let mut small = [0u8; 64];
        let e = advert().announce(&mut small).unwrap_err();
        assert_eq!((e, e.code()), (MdnsError::Buffer(64), "mdns_buffer"));
        // Every answer fits MAX_REPLY.
        let n = advert().announce(&mut out).unwrap();
        assert!(n > 0 && n <= MAX_REPLY);
    }

    proptest::proptest! {
        #[test]
        fn no_datagram_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600), legacy: bool) {
            let mut out = [0u8; MAX_REPLY];
            let _ = advert().answer(&data, legacy, &mut out);
        }
    }
}
