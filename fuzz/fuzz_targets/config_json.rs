//! Plant configuration from JSON (`--config FILE.json`, the API's `config` object): any bytes
//! either give a clear error or a configuration; a valid one survives its own JSON.
#![no_main]
use cellfab_plant::PlantConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = PlantConfig::from_json_str(text) else { return };
    if config.validate().is_err() {
        return;
    }
    let json = serde_json::to_string(&config).expect("a configuration serialises");
    let again = PlantConfig::from_json_str(&json).unwrap_or_else(|e| panic!("own JSON does not parse: {e}\n{json}"));
    assert_eq!(again, config, "JSON round trip changed the configuration");
});
