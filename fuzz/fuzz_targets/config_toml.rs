//! Plant configuration from TOML (`cellfab run --config FILE.toml`): any bytes either give a
//! clear error or a configuration; a configuration that validates survives its own TOML.
#![no_main]
use cellfab_plant::PlantConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = PlantConfig::from_toml_str(text) else { return };
    if config.validate().is_err() {
        return;
    }
    let toml = config.to_toml();
    let again = PlantConfig::from_toml_str(&toml).unwrap_or_else(|e| panic!("own TOML does not parse: {e}\n{toml}"));
    assert_eq!(again, config, "TOML round trip changed the configuration");
});
