//! [`to_value_without`]: the JSON value of a struct without some of its top-level fields,
//! which are never serialised — the KPIs read a few numbers from a stage result whose
//! `alarms` list can hold tens of thousands of events.

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;

/// `serde_json::to_value(value)` minus the top-level struct fields named in `skip` (nested
/// structs keep all theirs). A value that is not a struct is converted whole.
pub fn to_value_without<T: Serialize + ?Sized>(value: &T, skip: &'static [&'static str]) -> serde_json::Result<Value> {
    value.serialize(SkipFields { inner: serde_json::value::Serializer, skip })
}

struct SkipFields<S> {
    inner: S,
    skip: &'static [&'static str],
}

struct SkipStruct<S> {
    inner: S,
    skip: &'static [&'static str],
}

impl<S: SerializeStruct> SerializeStruct for SkipStruct<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), S::Error> {
        if self.skip.contains(&key) {
            return Ok(());
        }
        self.inner.serialize_field(key, value)
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.inner.end()
    }
}

/// Everything but `serialize_struct` goes straight to the inner serializer.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(fn $name(self, $($arg: $ty),*) -> Result<$out, S::Error> {
            self.inner.$name($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for SkipFields<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = S::SerializeSeq;
    type SerializeTuple = S::SerializeTuple;
    type SerializeTupleStruct = S::SerializeTupleStruct;
    type SerializeTupleVariant = S::SerializeTupleVariant;
    type SerializeMap = S::SerializeMap;
    type SerializeStruct = SkipStruct<S::SerializeStruct>;
    type SerializeStructVariant = S::SerializeStructVariant;

    forward! {
        serialize_bool(v: bool) -> S::Ok;
        serialize_i8(v: i8) -> S::Ok;
        serialize_i16(v: i16) -> S::Ok;
        serialize_i32(v: i32) -> S::Ok;
        serialize_i64(v: i64) -> S::Ok;
        serialize_u8(v: u8) -> S::Ok;
        serialize_u16(v: u16) -> S::Ok;
        serialize_u32(v: u32) -> S::Ok;
        serialize_u64(v: u64) -> S::Ok;
        serialize_f32(v: f32) -> S::Ok;
        serialize_f64(v: f64) -> S::Ok;
        serialize_char(v: char) -> S::Ok;
        serialize_str(v: &str) -> S::Ok;
        serialize_bytes(v: &[u8]) -> S::Ok;
        serialize_none() -> S::Ok;
        serialize_unit() -> S::Ok;
        serialize_unit_struct(name: &'static str) -> S::Ok;
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str) -> S::Ok;
        serialize_seq(len: Option<usize>) -> S::SerializeSeq;
        serialize_tuple(len: usize) -> S::SerializeTuple;
        serialize_tuple_struct(name: &'static str, len: usize) -> S::SerializeTupleStruct;
        serialize_tuple_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> S::SerializeTupleVariant;
        serialize_map(len: Option<usize>) -> S::SerializeMap;
        serialize_struct_variant(name: &'static str, index: u32, variant: &'static str, len: usize) -> S::SerializeStructVariant;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.serialize_some(value)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.serialize_newtype_struct(name, value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_newtype_variant(name, index, variant, value)
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, S::Error> {
        Ok(SkipStruct { inner: self.inner.serialize_struct(name, len)?, skip: self.skip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Inner {
        alarms: Vec<u32>,
        x: f64,
    }

    #[derive(serde::Serialize)]
    struct StageResult {
        length_m: f64,
        alarms: Vec<u32>,
        lanes: Vec<Inner>,
        note: Option<String>,
    }

    #[test]
    fn only_the_named_top_level_fields_are_left_out() {
        let r = StageResult {
            length_m: 1587.5,
            alarms: vec![1, 2, 3],
            lanes: vec![Inner { alarms: vec![7], x: 0.5 }],
            note: None,
        };
        let mut expected = serde_json::to_value(&r).unwrap();
        expected.as_object_mut().unwrap().shift_remove("alarms");
        assert_eq!(to_value_without(&r, &["alarms"]).unwrap(), expected);
        assert_eq!(to_value_without(&r, &[]).unwrap(), serde_json::to_value(&r).unwrap());
        assert_eq!(to_value_without(&3u8, &["alarms"]).unwrap(), serde_json::json!(3));
    }
}
