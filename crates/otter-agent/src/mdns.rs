//! mDNS: advertise a device as `_otter._tcp`, and discover devices.
//!
//! A running device publishes one service instance of type
//! [`SERVICE_TYPE`] whose TXT records say what it is and where its API lives:
//!
//! | key       | value                                              |
//! |-----------|----------------------------------------------------|
//! | `otter`   | the TXT layout version, [`PROTOCOL_VERSION`] (`1`) |
//! | `chip`    | the chip the running firmware is built for         |
//! | `version` | the running firmware's version (app descriptor)    |
//! | `project` | the running firmware's project name                |
//! | `api`     | the path of the status endpoint                    |
//! | `update`  | the path of the firmware upload endpoint           |
//! | `auth`    | `token` when a bearer token is required, else `none` |
//!
//! Beside it, [`Advertiser::start_with`] publishes the services the
//! uploaders people already use look for ([`UploaderAdverts`]), on the
//! same port and host name:
//!
//! | type | TXT | who reads it |
//! |---|---|---|
//! | [`ARDUINO_SERVICE_TYPE`] | `board` (the chip), `tcp_check=no`, `ssh_upload=no`, `auth_upload=yes`/`no` | the Arduino IDE's network ports (espota) |
//! | [`ESPHOME_SERVICE_TYPE`] | `platform=ESP32`, `board` (the chip), `version` | ESPHome's dashboard |
//!
//! [`Advertiser`] publishes a [`DeviceAdvert`] and withdraws it (an mDNS
//! goodbye) when it is shut down or dropped; [`browse`] collects the devices
//! that answer within a time window.
//!
//! Both run on [`mdns_sd`]'s daemon, a plain thread with its own sockets, so
//! neither needs a tokio runtime. Every wait here is bounded; the longest,
//! shutting an [`Advertiser`] down, takes about 150 ms when the daemon is
//! healthy and never more than a few seconds, so call it from
//! `spawn_blocking` inside async code.
//!
//! # Interfaces
//!
//! [`MdnsOptions`] picks the network interfaces. [`Interfaces::All`] (the
//! default) is what finds real ESP32s on the LAN: mdns-sd uses every
//! interface that is up (running), IPv4 and IPv6, loopback included, and
//! loops its own multicast back, so a browser on the same host sees a local
//! advertiser too. [`Interfaces::Loopback`] keeps all traffic on IPv4
//! loopback (`127.0.0.0/8`): every interface is disabled, then
//! [`IfKind::LoopbackV4`] enabled again (mdns-sd applies selections in
//! order, the last match wins per interface). That is for virtual devices
//! bound to `127.0.0.1` and for tests. Linux carries multicast on `lo` even
//! without its `MULTICAST` flag (checked in a fresh network namespace), but
//! `lo` must be up: a down interface is skipped without an error, and then
//! nothing is announced or found.
//!
//! The addresses published are those of [`DeviceAdvert::addrs`] that lie on
//! an enabled interface's subnet; with none given, every address of the
//! enabled interfaces.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::Serialize;

/// The DNS-SD service type of an otter device.
pub const SERVICE_TYPE: &str = "_otter._tcp.local.";

/// The DNS-SD service type ArduinoOTA devices publish (the Arduino IDE
/// lists them as network ports).
pub const ARDUINO_SERVICE_TYPE: &str = "_arduino._tcp.local.";

/// The DNS-SD service type ESPHome devices publish.
pub const ESPHOME_SERVICE_TYPE: &str = "_esphomelib._tcp.local.";

/// The uploader services published beside `_otter._tcp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploaderAdverts {
    /// `_arduino._tcp`, with whether uploads need a password
    /// (`auth_upload`); `None`: not published.
    pub arduino: Option<bool>,
    /// `_esphomelib._tcp`.
    pub esphome: bool,
}

/// The version of the TXT layout, published under the `otter` key.
pub const PROTOCOL_VERSION: &str = "1";

/// TXT keys, as listed in the [module documentation](self).
mod key {
    pub const PROTOCOL: &str = "otter";
    pub const CHIP: &str = "chip";
    pub const VERSION: &str = "version";
    pub const PROJECT: &str = "project";
    pub const API: &str = "api";
    pub const UPDATE: &str = "update";
    pub const AUTH: &str = "auth";
}

/// TXT value of `auth` when a bearer token is required.
const AUTH_TOKEN: &str = "token";
/// TXT value of `auth` when the device is open.
const AUTH_NONE: &str = "none";

/// How long to wait for the daemon to confirm a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// mdns-sd repeats a goodbye 120 ms after the first one, in case a peer
/// missed it; waiting this long before stopping the daemon lets it go out.
const GOODBYE_REPEAT_WAIT: Duration = Duration::from_millis(150);
/// What a device publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAdvert {
    /// The service instance name, e.g. `otter-3f2a`.
    pub instance: String,
    /// The host name its addresses are published under, e.g.
    /// `otter-3f2a.local.`; `otter-3f2a` and `otter-3f2a.local` are completed.
    pub hostname: String,
    /// The addresses the device's HTTP API listens on. Empty: every address
    /// of the selected interfaces, kept up to date as they change.
    pub addrs: Vec<IpAddr>,
    /// The TCP port of the HTTP API.
    pub port: u16,
    /// The chip the running firmware is built for, e.g. `esp32s3`.
    pub chip: String,
    /// The running firmware's version.
    pub version: String,
    /// The running firmware's project name.
    pub project: String,
    /// The path of the status endpoint, e.g. `/api/ota/status`.
    pub api_path: String,
    /// The path of the firmware upload endpoint, e.g. `/update`.
    pub update_path: String,
    /// Whether the API requires a bearer token.
    pub auth: bool,
}

impl DeviceAdvert {
    /// The TXT records this advert publishes, as `(key, value)` pairs.
    pub fn txt_records(&self) -> Vec<(&'static str, String)> {
        let auth = if self.auth { AUTH_TOKEN } else { AUTH_NONE };
        vec![
            (key::PROTOCOL, PROTOCOL_VERSION.to_owned()),
            (key::CHIP, self.chip.clone()),
            (key::VERSION, self.version.clone()),
            (key::PROJECT, self.project.clone()),
            (key::API, self.api_path.clone()),
            (key::UPDATE, self.update_path.clone()),
            (key::AUTH, auth.to_owned()),
        ]
    }

    /// The uploader services `up` selects, as `(type, TXT records)`.
    pub fn uploader_records(
        &self,
        up: &UploaderAdverts,
    ) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
        let mut v = Vec::new();
        if let Some(auth) = up.arduino {
            v.push((
                ARDUINO_SERVICE_TYPE,
                vec![
                    ("board", self.chip.clone()),
                    ("tcp_check", "no".to_owned()),
                    ("ssh_upload", "no".to_owned()),
                    ("auth_upload", if auth { "yes" } else { "no" }.to_owned()),
                ],
            ));
        }
        if up.esphome {
            v.push((
                ESPHOME_SERVICE_TYPE,
                vec![
                    ("platform", "ESP32".to_owned()),
                    ("board", self.chip.clone()),
                    ("version", self.version.clone()),
                ],
            ));
        }
        v
    }

    fn uploader_services(&self, up: &UploaderAdverts) -> Result<Vec<ServiceInfo>, MdnsError> {
        let hostname = normalize_hostname(&self.hostname);
        self.uploader_records(up)
            .into_iter()
            .map(|(ty, txt)| {
                let info = ServiceInfo::new(
                    ty,
                    &self.instance,
                    &hostname,
                    self.addrs.as_slice(),
                    self.port,
                    txt.as_slice(),
                )
                .map_err(MdnsError::InvalidAdvert)?;
                Ok(if self.addrs.is_empty() {
                    info.enable_addr_auto()
                } else {
                    info
                })
            })
            .collect()
    }

    /// The fully qualified service instance name, as mdns-sd keys it.
    fn fullname(&self) -> String {
        format!("{}.{SERVICE_TYPE}", escape_instance(&self.instance))
    }

    /// The mdns-sd service this advert becomes.
    fn service_info(&self) -> Result<ServiceInfo, MdnsError> {
        let hostname = normalize_hostname(&self.hostname);
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &self.instance,
            &hostname,
            self.addrs.as_slice(),
            self.port,
            self.txt_records().as_slice(),
        )
        .map_err(MdnsError::InvalidAdvert)?;
        Ok(if self.addrs.is_empty() {
            info.enable_addr_auto()
        } else {
            info
        })
    }
}

/// Which network interfaces mDNS runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interfaces {
    /// Every interface that is up, IPv4 and IPv6, loopback included.
    #[default]
    All,
    /// IPv4 loopback only: nothing leaves the host.
    Loopback,
}

/// Options shared by [`Advertiser`] and [`browse`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MdnsOptions {
    /// The interfaces to advertise or browse on.
    pub interfaces: Interfaces,
}

impl MdnsOptions {
    /// Every interface: what finds real devices on the LAN.
    pub fn all() -> Self {
        Self {
            interfaces: Interfaces::All,
        }
    }

    /// IPv4 loopback only: for virtual devices on `127.0.0.1` and for tests.
    pub fn loopback() -> Self {
        Self {
            interfaces: Interfaces::Loopback,
        }
    }
}

/// A daemon command, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// Selecting the interfaces of [`MdnsOptions`].
    SelectInterfaces,
    /// Publishing a service.
    Register,
    /// Withdrawing a service (sending its goodbye).
    Unregister,
    /// Browsing for devices.
    Browse,
    /// Stopping the daemon.
    Shutdown,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SelectInterfaces => "select the network interfaces",
            Self::Register => "publish the device",
            Self::Unregister => "withdraw the device",
            Self::Browse => "browse for devices",
            Self::Shutdown => "stop",
        })
    }
}

/// What can go wrong advertising or browsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MdnsError {
    /// The mDNS daemon could not start: the operating system refused a
    /// poller or a thread. Nothing the caller did; retrying may help.
    #[error("could not start the mDNS daemon")]
    Start(#[source] mdns_sd::Error),
    /// The advert cannot be published as given (instance or host name, a TXT
    /// record over 255 bytes, an address). The caller must fix the advert.
    #[error("the device advert cannot be published over mDNS")]
    InvalidAdvert(#[source] mdns_sd::Error),
    /// The daemon refused a command: its queue was full or it has stopped.
    #[error("the mDNS daemon could not {operation}")]
    Daemon {
        /// What was asked of it.
        operation: Operation,
        /// Why it refused.
        #[source]
        source: mdns_sd::Error,
    },
    /// The daemon did not confirm a command in time: it is stuck or gone.
    #[error("the mDNS daemon did not {operation} within {timeout:?}")]
    Timeout {
        /// What was asked of it.
        operation: Operation,
        /// How long it was given.
        timeout: Duration,
    },
}

impl MdnsError {
    fn daemon(operation: Operation) -> impl FnOnce(mdns_sd::Error) -> Self {
        move |source| Self::Daemon { operation, source }
    }
}

/// An mdns-sd daemon that is stopped, within a bounded wait, when dropped.
struct Daemon {
    inner: Option<ServiceDaemon>,
}

impl Daemon {
    /// Starts a daemon on the interfaces `opts` selects.
    fn start(opts: &MdnsOptions) -> Result<Self, MdnsError> {
        let daemon = Self {
            inner: Some(ServiceDaemon::new().map_err(MdnsError::Start)?),
        };
        let d = daemon.get(Operation::SelectInterfaces)?;
        match opts.interfaces {
            Interfaces::All => {}
            Interfaces::Loopback => {
                // Later selections override earlier ones, per interface.
                d.disable_interface(IfKind::All)
                    .map_err(MdnsError::daemon(Operation::SelectInterfaces))?;
                d.enable_interface(IfKind::LoopbackV4)
                    .map_err(MdnsError::daemon(Operation::SelectInterfaces))?;
            }
        }
        Ok(daemon)
    }

    /// The running daemon, for `operation`.
    fn get(&self, operation: Operation) -> Result<&ServiceDaemon, MdnsError> {
        self.inner.as_ref().ok_or(MdnsError::Daemon {
            operation,
            source: mdns_sd::Error::DaemonShutdown,
        })
    }

    /// Stops the daemon and waits for its thread to finish; a second call
    /// does nothing.
    fn stop(&mut self) -> Result<(), MdnsError> {
        let Some(daemon) = self.inner.take() else {
            return Ok(());
        };
        let status = match daemon.shutdown() {
            Ok(status) => status,
            Err(mdns_sd::Error::DaemonShutdown) => return Ok(()),
            Err(source) => {
                return Err(MdnsError::Daemon {
                    operation: Operation::Shutdown,
                    source,
                })
            }
        };
        match status.recv_timeout(COMMAND_TIMEOUT) {
            Ok(_) | Err(mdns_sd::RecvTimeoutError::Disconnected) => Ok(()),
            Err(mdns_sd::RecvTimeoutError::Timeout) => Err(MdnsError::Timeout {
                operation: Operation::Shutdown,
                timeout: COMMAND_TIMEOUT,
            }),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            tracing::warn!(error = %err, "stopping the mDNS daemon");
        }
    }
}

/// Publishes one device as an `_otter._tcp` service until shut down or
/// dropped; either withdraws it with an mDNS goodbye first.
pub struct Advertiser {
    daemon: Daemon,
    /// The fullname currently registered.
    fullname: String,
    /// The uploader services published too, and their fullnames.
    uploaders: UploaderAdverts,
    extra: Vec<String>,
}

impl fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Advertiser")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Advertiser {
    /// Starts an mDNS daemon on the interfaces `opts` selects and publishes
    /// `advert`. The service is announced once its names are probed (under a
    /// second); the daemon answers queries until shutdown.
    pub fn start(advert: &DeviceAdvert, opts: &MdnsOptions) -> Result<Self, MdnsError> {
        Self::start_with(advert, &UploaderAdverts::default(), opts)
    }

    /// [`Advertiser::start`], publishing the uploader services `up` selects
    /// as well.
    pub fn start_with(
        advert: &DeviceAdvert,
        up: &UploaderAdverts,
        opts: &MdnsOptions,
    ) -> Result<Self, MdnsError> {
        let info = advert.service_info()?;
        let extra = advert.uploader_services(up)?;
        let daemon = Daemon::start(opts)?;
        daemon
            .get(Operation::Register)?
            .register(info)
            .map_err(register_error)?;
        let mut names = Vec::new();
        for info in extra {
            names.push(info.get_fullname().to_owned());
            daemon
                .get(Operation::Register)?
                .register(info)
                .map_err(register_error)?;
        }
        tracing::info!(
            instance = %advert.instance,
            port = advert.port,
            version = %advert.version,
            "advertising over mDNS as {SERVICE_TYPE}"
        );
        Ok(Self {
            daemon,
            fullname: advert.fullname(),
            uploaders: *up,
            extra: names,
        })
    }

    /// Publishes `advert` in place of the current one, e.g. after the device
    /// rebooted into a new version. The new TXT records are announced with
    /// the cache-flush bit, so browsers replace what they hold. A new instance
    /// name withdraws the old one first.
    pub fn update(&mut self, advert: &DeviceAdvert) -> Result<(), MdnsError> {
        let info = advert.service_info()?;
        let extra = advert.uploader_services(&self.uploaders)?;
        let fullname = advert.fullname();
        if !fullname.eq_ignore_ascii_case(&self.fullname) {
            self.unregister()?;
        }
        self.daemon
            .get(Operation::Register)?
            .register(info)
            .map_err(register_error)?;
        self.extra.clear();
        for info in extra {
            self.extra.push(info.get_fullname().to_owned());
            self.daemon
                .get(Operation::Register)?
                .register(info)
                .map_err(register_error)?;
        }
        tracing::info!(instance = %advert.instance, version = %advert.version, "mDNS advert updated");
        self.fullname = fullname;
        Ok(())
    }

    /// Withdraws the device (an mDNS goodbye, so browsers drop it at once) and
    /// stops the daemon. Dropping the advertiser does the same, logging
    /// instead of returning errors.
    pub fn shutdown(mut self) -> Result<(), MdnsError> {
        self.stop()
    }

    /// Sends the goodbye for the current fullname and waits for the daemon
    /// to confirm it.
    fn unregister(&self) -> Result<(), MdnsError> {
        for name in &self.extra {
            self.unregister_one(name)?;
        }
        self.unregister_one(&self.fullname)
    }

    fn unregister_one(&self, fullname: &str) -> Result<(), MdnsError> {
        let status = self
            .daemon
            .get(Operation::Unregister)?
            .unregister(fullname)
            .map_err(MdnsError::daemon(Operation::Unregister))?;
        match status.recv_timeout(COMMAND_TIMEOUT) {
            Ok(mdns_sd::UnregisterStatus::OK) => Ok(()),
            // Not registered: nothing to withdraw.
            Ok(mdns_sd::UnregisterStatus::NotFound) => Ok(()),
            Err(mdns_sd::RecvTimeoutError::Disconnected) => Err(MdnsError::Daemon {
                operation: Operation::Unregister,
                source: mdns_sd::Error::DaemonShutdown,
            }),
            Err(mdns_sd::RecvTimeoutError::Timeout) => Err(MdnsError::Timeout {
                operation: Operation::Unregister,
                timeout: COMMAND_TIMEOUT,
            }),
        }
    }

    fn stop(&mut self) -> Result<(), MdnsError> {
        if self.daemon.inner.is_none() {
            return Ok(());
        }
        let withdrawn = self.unregister();
        if withdrawn.is_ok() {
            std::thread::sleep(GOODBYE_REPEAT_WAIT);
        }
        let stopped = self.daemon.stop();
        withdrawn.and(stopped)
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            tracing::warn!(error = %err, "withdrawing the mDNS advert");
        }
    }
}

/// `register` fails on a bad name (the caller's advert) or a busy or
/// stopped daemon.
fn register_error(source: mdns_sd::Error) -> MdnsError {
    match source {
        mdns_sd::Error::Msg(_) | mdns_sd::Error::ParseIpAddr(_) => MdnsError::InvalidAdvert(source),
        source => MdnsError::Daemon {
            operation: Operation::Register,
            source,
        },
    }
}

/// A device found by [`browse`]. TXT fields are `None` when the device did
/// not publish them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundDevice {
    /// The service instance name, e.g. `otter-3f2a`.
    pub instance: String,
    /// The host name its addresses are published under.
    pub hostname: String,
    /// Its addresses, IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// The TCP port of its HTTP API.
    pub port: u16,
    /// The base URL of its HTTP API, `http://ADDR:PORT`, on its first
    /// address (or its host name when it published none).
    pub url: String,
    /// TXT `chip`.
    pub chip: Option<String>,
    /// TXT `version`.
    pub version: Option<String>,
    /// TXT `project`.
    pub project: Option<String>,
    /// TXT `api`: the path of the status endpoint.
    pub api: Option<String>,
    /// TXT `update`: the path of the upload endpoint.
    pub update: Option<String>,
    /// TXT `auth`: `token` or `none`.
    pub auth: Option<String>,
    /// TXT `otter`: the TXT layout version.
    pub protocol: Option<String>,
}

impl FoundDevice {
    fn from_resolved(svc: &ResolvedService) -> Self {
        let mut addresses: Vec<IpAddr> =
            svc.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
        addresses.sort_by_key(|a| (a.is_ipv6(), *a));
        addresses.dedup();
        let port = svc.get_port();
        let url = match addresses.first() {
            Some(IpAddr::V4(a)) => format!("http://{a}:{port}"),
            Some(IpAddr::V6(a)) => format!("http://[{a}]:{port}"),
            None => format!("http://{}:{port}", svc.get_hostname().trim_end_matches('.')),
        };
        let txt = |k: &str| svc.get_property_val_str(k).map(str::to_owned);
        Self {
            instance: instance_of(svc.get_fullname()),
            hostname: svc.get_hostname().to_owned(),
            addresses,
            port,
            url,
            chip: txt(key::CHIP),
            version: txt(key::VERSION),
            project: txt(key::PROJECT),
            api: txt(key::API),
            update: txt(key::UPDATE),
            auth: txt(key::AUTH),
            protocol: txt(key::PROTOCOL),
        }
    }
}

/// Browses for `_otter._tcp` devices on the interfaces `opts` selects for
/// `timeout`, and returns those resolved in that time, one per instance
/// (the latest answer wins; a device that said goodbye is left out), sorted
/// by instance name. Always takes the whole `timeout`.
pub fn browse(timeout: Duration, opts: &MdnsOptions) -> Result<Vec<FoundDevice>, MdnsError> {
    let mut daemon = Daemon::start(opts)?;
    let events = daemon
        .get(Operation::Browse)?
        .browse(SERVICE_TYPE)
        .map_err(MdnsError::daemon(Operation::Browse))?;
    let deadline = Instant::now() + timeout;
    let mut found = BTreeMap::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match events.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(svc)) => {
                let device = FoundDevice::from_resolved(&svc);
                tracing::debug!(instance = %device.instance, url = %device.url, "mDNS: resolved");
                found.insert(device.instance.clone(), device);
            }
            Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                let instance = instance_of(&fullname);
                tracing::debug!(%instance, "mDNS: removed");
                found.remove(&instance);
            }
            Ok(_) => {}
            Err(mdns_sd::RecvTimeoutError::Timeout) => break,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => {
                return Err(MdnsError::Daemon {
                    operation: Operation::Browse,
                    source: mdns_sd::Error::DaemonShutdown,
                })
            }
        }
    }
    daemon.stop()?;
    Ok(found.into_values().collect())
}

/// `name`, `name.local` or `name.local.` as `name.local.`.
fn normalize_hostname(hostname: &str) -> String {
    let base = hostname.trim_end_matches('.');
    let base = base.strip_suffix(".local").unwrap_or(base);
    format!("{base}.local.")
}

/// Escapes `.` and `\` in an instance name, as mdns-sd does when it builds a
/// fullname.
fn escape_instance(instance: &str) -> String {
    let mut out = String::with_capacity(instance.len());
    for c in instance.chars() {
        if c == '.' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The instance name of a fullname `INSTANCE._otter._tcp.local.`, unescaped.
fn instance_of(fullname: &str) -> String {
    let escaped = match fullname.len().checked_sub(SERVICE_TYPE.len() + 1) {
        Some(cut)
            if fullname.is_char_boundary(cut)
                && fullname[cut..].eq_ignore_ascii_case(&format!(".{SERVICE_TYPE}")) =>
        {
            &fullname[..cut]
        }
        _ => fullname,
    };
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert() -> DeviceAdvert {
        DeviceAdvert {
            instance: "otter-3f2a".into(),
            hostname: "otter-3f2a".into(),
            addrs: vec![IpAddr::from([127, 0, 0, 1])],
            port: 8080,
            chip: "esp32s3".into(),
            version: "1.2.3".into(),
            project: "blink".into(),
            api_path: "/api/ota/status".into(),
            update_path: "/update".into(),
            auth: true,
        }
    }

    #[test]
    fn txt_records_name_every_key() {
        let txt = advert().txt_records();
        let get = |k: &str| {
            txt.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("otter"), Some("1"));
        assert_eq!(get("chip"), Some("esp32s3"));
        assert_eq!(get("version"), Some("1.2.3"));
        assert_eq!(get("project"), Some("blink"));
        assert_eq!(get("api"), Some("/api/ota/status"));
        assert_eq!(get("update"), Some("/update"));
        assert_eq!(get("auth"), Some("token"));
        let open = DeviceAdvert {
            auth: false,
            ..advert()
        };
        assert!(open.txt_records().contains(&("auth", "none".to_owned())));
    }

    #[test]
    fn uploader_services_carry_what_the_arduino_ide_and_esphome_read() {
        let a = advert();
        assert!(a.uploader_records(&UploaderAdverts::default()).is_empty());
        let up = UploaderAdverts {
            arduino: Some(true),
            esphome: true,
        };
        let recs = a.uploader_records(&up);
        assert_eq!(recs[0].0, "_arduino._tcp.local.");
        assert_eq!(
            recs[0].1,
            [
                ("board", "esp32s3".to_owned()),
                ("tcp_check", "no".to_owned()),
                ("ssh_upload", "no".to_owned()),
                ("auth_upload", "yes".to_owned()),
            ]
        );
        assert_eq!(recs[1].0, "_esphomelib._tcp.local.");
        let infos = a.uploader_services(&up).expect("valid");
        assert_eq!(infos[0].get_fullname(), "otter-3f2a._arduino._tcp.local.");
        assert_eq!(
            infos[1].get_fullname(),
            "otter-3f2a._esphomelib._tcp.local."
        );
        assert_eq!(infos[0].get_port(), 8080);
        let open = UploaderAdverts {
            arduino: Some(false),
            esphome: false,
        };
        assert_eq!(a.uploader_records(&open)[0].1[3].1, "no");
    }

    #[test]
    fn hostnames_are_completed() {
        assert_eq!(normalize_hostname("otter-1"), "otter-1.local.");
        assert_eq!(normalize_hostname("otter-1.local"), "otter-1.local.");
        assert_eq!(normalize_hostname("otter-1.local."), "otter-1.local.");
    }

    #[test]
    fn instance_names_round_trip_through_fullnames() {
        for name in ["otter-3f2a", "lab.bench\\2", "ÜBER otter"] {
            let fullname = format!("{}.{SERVICE_TYPE}", escape_instance(name));
            assert_eq!(instance_of(&fullname), name);
        }
        assert_eq!(instance_of("x._OTTER._tcp.local."), "x");
        assert_eq!(instance_of("odd"), "odd");
    }

    #[test]
    fn an_advert_becomes_a_service() {
        let info = advert().service_info().expect("valid advert");
        assert_eq!(info.get_fullname(), "otter-3f2a._otter._tcp.local.");
        assert_eq!(info.get_hostname(), "otter-3f2a.local.");
        assert_eq!(info.get_property_val_str("version"), Some("1.2.3"));
        assert!(!info.is_addr_auto());
        let auto = DeviceAdvert {
            addrs: vec![],
            ..advert()
        };
        assert!(auto.service_info().expect("valid advert").is_addr_auto());
    }

    #[test]
    fn an_oversized_txt_record_is_the_callers_fault() {
        let long = DeviceAdvert {
            project: "p".repeat(300),
            ..advert()
        };
        assert!(matches!(
            long.service_info(),
            Err(MdnsError::InvalidAdvert(_))
        ));
    }
}
