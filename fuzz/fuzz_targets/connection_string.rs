//! Azure IoT Hub device connection strings (`--iothub`, `CELLFAB_IOTHUB_CONNECTION_STRING`):
//! any text is refused with an error or gives a device whose SAS token and MQTT names are
//! well formed.
#![no_main]
use cellfab_iot::sas::ConnectionString;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cs) = ConnectionString::parse(text) else { return };
    let token = cs.sas_token(1_767_225_600);
    assert!(token.starts_with("SharedAccessSignature sr="), "{token}");
    assert!(token.ends_with("&se=1767225600"), "{token}");
    assert!(!cs.resource().is_empty());
    assert!(!cs.events_topic().contains(['+', '#', '\0']), "{}", cs.events_topic());
    assert!(cs.user_name().contains("/?api-version="), "{}", cs.user_name());
});
