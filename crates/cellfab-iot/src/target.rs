//! Where messages go: a generic MQTT broker given by URL, or an Azure IoT Hub device given by
//! its connection string. Both print with their secrets replaced by `***`.
//!
//! ```text
//! mqtt[s]://[user[:password]@]host[:port][/prefix][?client_id=ID&qos=0|1&ca=FILE&keep_alive_s=N]
//! ```

use crate::sas::ConnectionString;
use crate::IotError;
use percent_encoding::percent_decode_str;
use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Topic prefix when the URL has no path.
pub const DEFAULT_PREFIX: &str = "cellfab";
/// Lifetime of a generated SAS token [s]; the connection is renewed [`RENEW_MARGIN_S`] before.
pub const DEFAULT_TOKEN_TTL_S: u64 = 3600;
/// How long before the token expires the publisher reconnects with a new one [s].
pub const RENEW_MARGIN_S: u64 = 300;
/// Largest message an IoT Hub device may send [bytes].
pub const IOTHUB_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A generic broker from an `mqtt://` or `mqtts://` URL.
#[derive(Clone)]
pub struct MqttUrl {
    /// TLS (`mqtts`).
    pub tls: bool,
    /// Broker host.
    pub host: String,
    /// Broker port (1883 plain, 8883 TLS by default).
    pub port: u16,
    /// User name, if any.
    pub user: Option<String>,
    password: Option<String>,
    /// MQTT client id.
    pub client_id: String,
    /// 0 or 1 (default 1).
    pub qos: u8,
    /// Topic prefix (`cellfab` by default).
    pub prefix: String,
    /// PEM file of the certificate authority that signed the broker's certificate (default:
    /// the system's trusted roots).
    pub ca: Option<PathBuf>,
    /// Keep-alive interval [s].
    pub keep_alive_s: u64,
}

impl MqttUrl {
    /// Parses a broker URL. `password` (e.g. from `CELLFAB_MQTT_PASSWORD`) is used when the
    /// URL has none.
    pub fn parse(url: &str, password: Option<String>) -> Result<Self, IotError> {
        let bad = |reason: String| IotError::Url { url: redact_url(url), reason };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected mqtt://… or mqtts://…".into()))?;
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(bad(format!("scheme {other:?} is not supported (allowed: mqtt, mqtts)"))),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().to_string();
        let (user, url_password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((name, pw)) => (Some(decode(name)), Some(decode(pw))),
                None => (Some(decode(u)), None),
            },
            None => (None, None),
        };
        let default_port = if tls { 8883 } else { 1883 };
        let unbracket = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_string();
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => {
                let port = p.parse::<u16>().ok().filter(|p| *p > 0);
                (unbracket(h), port.ok_or_else(|| bad(format!("port {p:?} must be a number from 1 to 65535")))?)
            }
            _ => (unbracket(hostport), default_port),
        };
        if host.is_empty() {
            return Err(bad("the host is missing".into()));
        }
        let prefix = path.trim_matches('/');
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX.to_string() } else { decode(prefix) };
        if prefix.contains(['+', '#']) {
            return Err(bad(format!("topic prefix {prefix:?} must not contain + or #")));
        }
        let mut out = Self {
            tls,
            host,
            port,
            user,
            password: url_password.or(password),
            client_id: format!("cellfab-{}", std::process::id()),
            qos: 1,
            prefix,
            ca: None,
            keep_alive_s: 30,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v);
            match k {
                "client_id" if !v.is_empty() => out.client_id = v,
                "qos" => {
                    out.qos = match v.as_str() {
                        "0" => 0,
                        "1" => 1,
                        _ => return Err(bad(format!("qos = {v:?} is not supported (allowed 0 or 1)"))),
                    }
                }
                "ca" => out.ca = Some(PathBuf::from(v)),
                "keep_alive_s" => {
                    out.keep_alive_s = v
                        .parse::<u64>()
                        .ok()
                        .filter(|s| (5..=3600).contains(s))
                        .ok_or_else(|| bad(format!("keep_alive_s = {v:?} must be within 5 to 3600 s")))?
                }
                other => {
                    return Err(bad(format!("unknown option {other:?} (allowed: client_id, qos, ca, keep_alive_s)")))
                }
            }
        }
        if out.ca.is_some() && !out.tls {
            return Err(bad("ca= needs an mqtts:// URL".into()));
        }
        Ok(out)
    }
}

impl std::fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            (None, Some(_)) => ":***@".into(),
            (None, None) => String::new(),
        };
        write!(f, "{scheme}://{user}{}:{}/{}", self.host, self.port, self.prefix)
    }
}

/// An Azure IoT Hub device.
#[derive(Clone)]
pub struct IotHub {
    /// The device identity.
    pub connection: ConnectionString,
    /// Port (8883; another only to test against a local broker).
    pub port: u16,
    /// CA file (default: the system's trusted roots).
    pub ca: Option<PathBuf>,
    /// Lifetime of each generated token [s].
    pub token_ttl_s: u64,
    /// A fixed token expiry (Unix seconds) instead of renewing tokens; for tests.
    pub fixed_expiry: Option<u64>,
    /// Logical topic prefix, sent as the `topic` application property.
    pub prefix: String,
    /// Samples per telemetry message (1 = one message per sample); messages stay under 256 KB.
    pub batch: usize,
}

impl IotHub {
    /// An IoT Hub target with the defaults (port 8883, system roots, 1 h tokens).
    pub fn new(connection: ConnectionString) -> Self {
        Self {
            connection,
            port: 8883,
            ca: None,
            token_ttl_s: DEFAULT_TOKEN_TTL_S,
            fixed_expiry: None,
            prefix: DEFAULT_PREFIX.into(),
            batch: 1,
        }
    }
}

/// A destination for messages.
#[derive(Clone)]
pub enum Target {
    /// Any MQTT 3.1.1 broker.
    Mqtt(MqttUrl),
    /// Azure IoT Hub.
    IotHub(IotHub),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Mqtt(u) => u.fmt(f),
            Target::IotHub(h) => {
                write!(f, "Azure IoT Hub {}:{} device {}", h.connection.host_name, h.port, h.connection.device_id)
            }
        }
    }
}

/// Options of one connection attempt and when to renew it (Unix seconds).
pub(crate) struct Connect {
    pub options: MqttOptions,
    pub renew_at: Option<u64>,
}

impl Target {
    /// Topic prefix of the logical topics.
    pub fn prefix(&self) -> &str {
        match self {
            Target::Mqtt(u) => &u.prefix,
            Target::IotHub(h) => &h.prefix,
        }
    }

    /// QoS of every publish.
    pub fn qos(&self) -> QoS {
        match self {
            Target::Mqtt(u) if u.qos == 0 => QoS::AtMostOnce,
            _ => QoS::AtLeastOnce,
        }
    }

    /// Checks that the CA file can be read; returns the TLS transport, if any.
    pub(crate) fn transport(&self) -> Result<Transport, IotError> {
        let (tls, ca) = match self {
            Target::Mqtt(u) => (u.tls, u.ca.as_deref()),
            Target::IotHub(h) => (true, h.ca.as_deref()),
        };
        if !tls {
            return Ok(Transport::Tcp);
        }
        let config = tls_config(ca)?;
        Ok(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))))
    }

    /// The connection options for an attempt at `now` (Unix seconds).
    pub(crate) fn connect(&self, transport: &Transport, now: u64) -> Connect {
        match self {
            Target::Mqtt(u) => {
                let mut o = MqttOptions::new(u.client_id.clone(), u.host.clone(), u.port);
                o.set_keep_alive(Duration::from_secs(u.keep_alive_s));
                if let Some(user) = &u.user {
                    o.set_credentials(user.clone(), u.password.clone().unwrap_or_default());
                } else if let Some(pw) = &u.password {
                    o.set_credentials("", pw.clone());
                }
                common(&mut o, transport);
                Connect { options: o, renew_at: None }
            }
            Target::IotHub(h) => {
                let c = &h.connection;
                let expiry = h.fixed_expiry.unwrap_or(now + h.token_ttl_s);
                let mut o = MqttOptions::new(c.device_id.clone(), c.host_name.clone(), h.port);
                o.set_keep_alive(Duration::from_secs(60));
                o.set_credentials(c.user_name(), c.sas_token(expiry));
                common(&mut o, transport);
                let renew_at =
                    h.fixed_expiry.is_none().then(|| expiry.saturating_sub(RENEW_MARGIN_S.min(h.token_ttl_s / 2)));
                Connect { options: o, renew_at }
            }
        }
    }

    /// The MQTT topic for a logical topic `<prefix>/<line>/<machine>/<kind>`.
    pub(crate) fn wire_topic(&self, logical: &str, message_id: &str) -> String {
        match self {
            Target::Mqtt(_) => logical.to_string(),
            Target::IotHub(h) => {
                let enc = crate::sas::url_encode;
                format!(
                    "{}$.ct=application%2Fjson&$.ce=utf-8&$.mid={}&topic={}",
                    h.connection.events_topic(),
                    enc(message_id),
                    enc(logical)
                )
            }
        }
    }

    /// Telemetry records per message (IoT Hub batching; 1 = no batching).
    pub fn batch(&self) -> usize {
        match self {
            Target::Mqtt(_) => 1,
            Target::IotHub(h) => h.batch.max(1),
        }
    }

    /// Largest payload accepted [bytes].
    pub fn max_payload_bytes(&self) -> usize {
        match self {
            Target::Mqtt(_) => 64 * 1024 * 1024,
            Target::IotHub(_) => IOTHUB_MAX_MESSAGE_BYTES,
        }
    }
}

fn common(o: &mut MqttOptions, transport: &Transport) {
    o.set_clean_session(true);
    o.set_inflight(crate::publisher::WINDOW as u16);
    o.set_max_packet_size(64 * 1024 * 1024, 64 * 1024 * 1024);
    o.set_transport(transport.clone());
}

fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, IotError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let tls_err = |reason: String| IotError::Tls { reason };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(format!("cannot read CA file {}: {e}", path.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| tls_err(format!("CA file {} is not PEM: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(tls_err(format!("CA file {} holds no certificate", path.display())));
            }
            for c in certs {
                roots.add(c).map_err(|e| tls_err(format!("CA file {}: {e}", path.display())))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IotError::Tls { reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The URL with its password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "***".into() };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_gives_host_port_user_prefix_and_options() {
        let u = MqttUrl::parse("mqtts://op%40plant:s3cr%2Ft@broker.local:9883/plant/a?client_id=twin-1&qos=0", None)
            .unwrap();
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port), ("broker.local", 9883));
        assert_eq!(u.user.as_deref(), Some("op@plant"));
        assert_eq!(u.password.as_deref(), Some("s3cr/t"));
        assert_eq!((u.prefix.as_str(), u.client_id.as_str(), u.qos), ("plant/a", "twin-1", 0));
        let shown = u.to_string();
        assert!(!shown.contains("s3cr"), "{shown}");
        assert_eq!(MqttUrl::parse("mqtt://h", None).unwrap().to_string(), "mqtt://h:1883/cellfab");
    }

    #[test]
    fn bad_url_errors_name_the_part_and_hide_the_password() {
        for (url, needle) in [
            ("http://u:pw@h", "scheme \"http\""),
            ("mqtt://u:pw@h:99999", "port \"99999\""),
            ("mqtt://u:pw@h?qos=2", "qos = \"2\""),
            ("mqtt://u:pw@h?ca=x.pem", "needs an mqtts"),
            ("mqtt://u:pw@h/a/#", "must not contain"),
            ("mqtt://u:pw@h?colour=red", "unknown option \"colour\""),
        ] {
            let e = MqttUrl::parse(url, None).err().unwrap().to_string();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains(":pw"), "{url}: {e}");
        }
    }

    #[test]
    fn iothub_token_is_renewed_five_minutes_before_it_expires() {
        let cs = ConnectionString::parse("HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey=a2V5").unwrap();
        let t = Target::IotHub(IotHub::new(cs.clone()));
        let transport = t.transport().unwrap();
        let a = t.connect(&transport, 1_000_000);
        assert_eq!(a.renew_at, Some(1_000_000 + DEFAULT_TOKEN_TTL_S - RENEW_MARGIN_S));
        let login = a.options.credentials().unwrap();
        assert_eq!(login.username, "h.azure-devices.net/d1/?api-version=2021-04-12");
        let password = login.password;
        assert_eq!(password, cs.sas_token(1_000_000 + DEFAULT_TOKEN_TTL_S));
        assert_eq!(a.options.client_id(), "d1");
        let b = t.connect(&transport, 1_003_300);
        assert_ne!(b.options.credentials().unwrap().password, password, "a new token on reconnection");
        // a fixed expiry is never renewed
        let mut hub = IotHub::new(cs);
        hub.fixed_expiry = Some(2_000_000);
        assert_eq!(Target::IotHub(hub).connect(&transport, 1_000_000).renew_at, None);
    }

    #[test]
    fn iothub_topic_carries_content_type_encoding_and_message_id() {
        let cs = ConnectionString::parse("HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey=a2V5").unwrap();
        let t = Target::IotHub(IotHub::new(cs));
        assert_eq!(
            t.wire_topic("cellfab/anode/MC_Coat_Anode/telemetry", "ab:7"),
            "devices/d1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&$.mid=ab%3A7&topic=cellfab%2Fanode%2FMC_Coat_Anode%2Ftelemetry"
        );
    }
}
