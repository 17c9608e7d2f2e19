//! The seed-layout JSON that `cellfab iot watch` reads from a folder: any file content gives
//! either no message or a message on a valid MQTT topic (`prefix/line/machine/kind`, no
//! wildcard, no NUL) whose payload serialises.
#![no_main]
use cellfab_iot::message::from_seed_file_bytes;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 2] = [
    "MC_Coat_Anode_2025-01-01T00-00-05-000000_result_at_5s.json",
    "MC_Coat_Anode_2025-01-01T01-00-00-000000_final_results_MC_Coat_Anode.json",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let Some(message) = from_seed_file_bytes("cellfab", NAMES[usize::from(pick & 1)], bytes) else { return };
    let levels: Vec<&str> = message.topic.split('/').collect();
    assert_eq!(levels.len(), 4, "{}", message.topic);
    assert!(levels.iter().all(|l| !l.is_empty()), "{}", message.topic);
    assert!(!message.topic.contains(['+', '#', '\0']), "{}", message.topic);
    serde_json::to_vec(&message.payload).expect("payload serialises");
});
