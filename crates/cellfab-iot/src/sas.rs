//! Azure IoT Hub device identity: the connection string and the SAS token derived from it.
//!
//! A device connection string `HostName=hub.azure-devices.net;DeviceId=dev1;SharedAccessKey=…`
//! names the hub, the device and its base64 key. The MQTT password is a shared access
//! signature over the resource `hub.azure-devices.net/devices/dev1`:
//!
//! ```text
//! SharedAccessSignature sr={enc(resource)}&sig={enc(base64(HMAC-SHA256(key, enc(resource) + "\n" + expiry)))}&se={expiry}
//! ```
//!
//! where `enc` is URL encoding that keeps RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`),
//! as Python's `urllib.parse.quote_plus` does for these inputs (Azure's reference recipe).

use crate::IotError;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;

/// Characters escaped in the token: everything but RFC 3986 unreserved characters.
const SAS_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// MQTT API version the hub expects in the user name.
pub const API_VERSION: &str = "2021-04-12";

/// URL-encodes `s` as the SAS token needs it.
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, SAS_ESCAPE).to_string()
}

/// A parsed device connection string. Its `Debug` output hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `HostName`, e.g. `myhub.azure-devices.net`.
    pub host_name: String,
    /// `DeviceId`.
    pub device_id: String,
    /// `SharedAccessKey`, decoded from base64 (secret).
    key: Vec<u8>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostName={};DeviceId={};SharedAccessKey=***", self.host_name, self.device_id)
    }
}

impl std::fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl ConnectionString {
    /// Parses `HostName=…;DeviceId=…;SharedAccessKey=…` (keys in any order, other keys such as
    /// `GatewayHostName` ignored). Errors never repeat the key.
    pub fn parse(text: &str) -> Result<Self, IotError> {
        let (mut host, mut device, mut key) = (None, None, None);
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| IotError::ConnectionString {
                reason: format!("part {:?} is not NAME=VALUE", redact_part(part)),
            })?;
            match name.trim() {
                "HostName" => host = Some(value.trim().to_string()),
                "DeviceId" => device = Some(value.trim().to_string()),
                "SharedAccessKey" => key = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let missing = |k: &str| IotError::ConnectionString { reason: format!("{k} is missing") };
        let host_name = host.filter(|h| !h.is_empty()).ok_or_else(|| missing("HostName"))?;
        let device_id = device.filter(|d| !d.is_empty()).ok_or_else(|| missing("DeviceId"))?;
        let key = key.filter(|k| !k.is_empty()).ok_or_else(|| missing("SharedAccessKey"))?;
        // Both names end up in the MQTT user name, client id and topics: no control characters,
        // no topic separators or wildcards (IoT Hub device ids never hold them either).
        for (name, value) in [("HostName", &host_name), ("DeviceId", &device_id)] {
            if let Some(c) = value.chars().find(|c| c.is_control() || matches!(c, '/' | '+' | '#')) {
                return Err(IotError::ConnectionString {
                    reason: format!("{name} {value:?} holds {c:?}, which cannot be part of an MQTT client id or topic"),
                });
            }
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.as_bytes())
            .map_err(|_| IotError::ConnectionString { reason: "SharedAccessKey is not valid base64".into() })?;
        Ok(Self { host_name, device_id, key })
    }

    /// The token's resource: `{HostName}/devices/{DeviceId}`.
    pub fn resource(&self) -> String {
        format!("{}/devices/{}", self.host_name, self.device_id)
    }

    /// MQTT user name: `{HostName}/{DeviceId}/?api-version=2021-04-12`.
    pub fn user_name(&self) -> String {
        format!("{}/{}/?api-version={API_VERSION}", self.host_name, self.device_id)
    }

    /// Telemetry topic of the device: `devices/{DeviceId}/messages/events/`.
    pub fn events_topic(&self) -> String {
        format!("devices/{}/messages/events/", self.device_id)
    }

    /// The SAS token valid until `expiry` (Unix seconds).
    pub fn sas_token(&self, expiry: u64) -> String {
        sas_token(&self.resource(), &self.key, expiry)
    }
}

fn redact_part(part: &str) -> String {
    match part.split_once('=') {
        Some((k, _)) => format!("{k}=***"),
        None if part.len() > 12 => format!("{}…", &part[..part.char_indices().nth(4).map_or(0, |(i, _)| i)]),
        None => part.to_string(),
    }
}

/// `SharedAccessSignature sr=…&sig=…&se=…` for `resource`, signed with the raw (decoded) key.
pub fn sas_token(resource: &str, key: &[u8], expiry: u64) -> String {
    let sr = url_encode(resource);
    let to_sign = format!("{sr}\n{expiry}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!("SharedAccessSignature sr={sr}&sig={}&se={expiry}", url_encode(&sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The key is base64("0123456789abcdef0123456789abcdef").
    const CS: &str = "HostName=my-hub.azure-devices.net;DeviceId=line_1.coater~A;SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    /// Signature with `/`, `+` and `=` (all three escaped). Computed independently with Python's `hmac`/`hashlib`/`base64`/`urllib.parse.quote_plus`
    /// (Azure's reference recipe):
    /// ```python
    /// uri = quote_plus("my-hub.azure-devices.net/devices/line_1.coater~A")
    /// sig = base64.b64encode(hmac.new(base64.b64decode(KEY), f"{uri}\n1767225604".encode(), hashlib.sha256).digest())
    /// f"SharedAccessSignature sr={uri}&sig={quote_plus(sig)}&se=1767225604"
    /// ```
    const VECTOR: &str = "SharedAccessSignature sr=my-hub.azure-devices.net%2Fdevices%2Fline_1.coater~A&sig=3Q4xqdam%2FE2l1auXCSChV8Ol%2BlPR1Nxi9yh4V9JuNm4%3D&se=1767225604";

    #[test]
    fn names_that_cannot_be_mqtt_names_are_refused() {
        // found by the connection_string fuzz target: a NUL in the device id reached the topic
        for cs in [
            "HostName=h.azure-devices.net;DeviceId=line-2\0\0;SharedAccessKey=c2VjcmV0",
            "HostName=h.azure-devices.net;DeviceId=a/b;SharedAccessKey=c2VjcmV0",
            "HostName=h.azure-devices.net;DeviceId=#;SharedAccessKey=c2VjcmV0",
            "HostName=h\n.net;DeviceId=d;SharedAccessKey=c2VjcmV0",
        ] {
            let e = ConnectionString::parse(cs).unwrap_err().to_string();
            assert!(e.contains("cannot be part of an MQTT client id or topic"), "{e}");
            assert!(!e.contains("c2VjcmV0"), "the key is never repeated: {e}");
        }
    }

    #[test]
    fn sas_token_matches_the_independently_computed_vector() {
        let cs = ConnectionString::parse(CS).unwrap();
        assert_eq!(cs.sas_token(1_767_225_604), VECTOR);
    }

    #[test]
    fn connection_string_debug_hides_the_key() {
        let cs = ConnectionString::parse(CS).unwrap();
        let shown = format!("{cs:?} {cs}");
        assert!(!shown.contains("MDEy"), "{shown}");
        assert!(shown.contains("SharedAccessKey=***"));
        assert_eq!(cs.user_name(), "my-hub.azure-devices.net/line_1.coater~A/?api-version=2021-04-12");
    }

    #[test]
    fn incomplete_connection_string_names_the_missing_part_without_the_key() {
        let err = ConnectionString::parse("HostName=h;SharedAccessKey=c2VjcmV0").unwrap_err().to_string();
        assert!(err.contains("DeviceId is missing"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let err = ConnectionString::parse("HostName=h;DeviceId=d;SharedAccessKey=not base64!").unwrap_err().to_string();
        assert!(err.contains("not valid base64") && !err.contains("not base64!"), "{err}");
    }
}
