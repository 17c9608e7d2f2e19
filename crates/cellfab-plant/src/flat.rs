//! Flat rows straight from typed values: a `serde` serializer that walks any `Serialize`
//! value and hands each leaf to a [`FlatSink`] as `(column name, value)`, without building a
//! `serde_json::Value` first.
//!
//! The columns are exactly those of flattening `serde_json::to_value(x)` (the table layout of
//! docs/DATA.md, "Tables"):
//!
//! ```text
//! struct / map field   ──► <parent>_<key> columns       {"speed_m_s": {"true": 1.0}} → speed_m_s_true
//! sequence / tuple     ──► one <name>_json text column   {"zones": [1, 2]}           → zones_json = "[1,2]"
//! None / unit          ──► Null                          unit variant                → its name as text
//! newtype variant V(x) ──► {V: x} flattened              integers → Int (u64 > i64::MAX → Float)
//! f32 / f64            ──► Float (non-finite → Null)     strings, chars              → Str
//! ```
//!
//! Column names are built in one reused buffer: a field costs no allocation. A sequence's
//! elements are written as JSON text straight into a reused buffer, with `f32` written as the
//! `f64` it widens to, which is the text `serde_json::to_string(&serde_json::to_value(x))`
//! gives. One case differs: a `#[serde(flatten)]` that repeats a key of its parent gives
//! both columns here, where the JSON object keeps one.

use serde::ser::{self, Serialize};
use serde_json::Value;

/// One leaf value of a flattened row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FlatValue<'a> {
    /// Missing (`None`, unit, non-finite numbers).
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Finite number.
    Float(f64),
    /// Text (strings, chars, unit variant names, JSON text of arrays).
    Str(&'a str),
}

/// Receives the columns of a flattened value, in order.
pub trait FlatSink {
    /// One column: its full name (`speed_m_s_true`) and value.
    fn value(&mut self, name: &str, value: FlatValue<'_>);
}

/// A sink that collects owned `(name, value)` pairs; for tests and small rows.
impl FlatSink for Vec<(String, FlatOwned)> {
    fn value(&mut self, name: &str, value: FlatValue<'_>) {
        self.push((name.to_string(), FlatOwned::from(value)));
    }
}

/// An owned [`FlatValue`].
#[derive(Clone, Debug, PartialEq)]
pub enum FlatOwned {
    /// Missing.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Finite number.
    Float(f64),
    /// Text.
    Str(String),
}

impl From<FlatValue<'_>> for FlatOwned {
    fn from(v: FlatValue<'_>) -> Self {
        match v {
            FlatValue::Null => FlatOwned::Null,
            FlatValue::Bool(b) => FlatOwned::Bool(b),
            FlatValue::Int(i) => FlatOwned::Int(i),
            FlatValue::Float(x) => FlatOwned::Float(x),
            FlatValue::Str(s) => FlatOwned::Str(s.to_string()),
        }
    }
}

/// Flattens `value` into `sink`, top-level fields without a prefix. A value whose
/// `Serialize` fails (or a map key that is not text or a number) is an error; the sink may
/// then have received part of the row.
pub fn flatten<T: Serialize + ?Sized>(value: &T, sink: &mut dyn FlatSink) -> Result<(), serde_json::Error> {
    let mut f = Flattener { name: String::with_capacity(64), text: Vec::new(), sink };
    value.serialize(&mut f)
}

/// The serializer: the current column name, the JSON text of the sequence being written
/// and where the leaves go.
struct Flattener<'s> {
    name: String,
    text: Vec<u8>,
    sink: &'s mut dyn FlatSink,
}

/// serde_json's compact JSON, except that `f32` is written as the `f64` it widens to (as
/// `serde_json::to_value` stores it).
struct WideFloats;

impl serde_json::ser::Formatter for WideFloats {
    fn write_f32<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, value: f32) -> std::io::Result<()> {
        serde_json::ser::CompactFormatter.write_f64(writer, value.into())
    }
}

impl Flattener<'_> {
    fn leaf(&mut self, v: FlatValue<'_>) {
        self.sink.value(&self.name, v);
    }

    /// Appends `_key` (or `key` at the top) to the name; returns the length to restore.
    fn enter(&mut self, key: &str) -> usize {
        let len = self.name.len();
        if len > 0 {
            self.name.push('_');
        }
        self.name.push_str(key);
        len
    }

    /// The JSON text in `self.text` as the `<name>_json` column.
    fn array(&mut self) -> Result<(), Error> {
        let len = self.enter("json");
        let text = std::str::from_utf8(&self.text).map_err(ser::Error::custom)?;
        self.sink.value(&self.name, FlatValue::Str(text));
        self.name.truncate(len);
        Ok(())
    }
}

type Error = serde_json::Error;

/// Writes a sequence's elements as JSON text; `restore` is the name length to go back to at
/// the end (tuple variants add the variant name).
struct SeqCollector<'a, 's> {
    f: &'a mut Flattener<'s>,
    first: bool,
    restore: usize,
}

impl<'a, 's> SeqCollector<'a, 's> {
    fn start(f: &'a mut Flattener<'s>, restore: usize) -> Self {
        f.text.clear();
        f.text.push(b'[');
        Self { f, first: true, restore }
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !std::mem::take(&mut self.first) {
            self.f.text.push(b',');
        }
        value.serialize(&mut serde_json::Serializer::with_formatter(&mut self.f.text, WideFloats))
    }

    fn finish(self) -> Result<(), Error> {
        self.f.text.push(b']');
        self.f.array()?;
        self.f.name.truncate(self.restore);
        Ok(())
    }
}

/// A struct, map or struct variant being flattened; `restore` is the name length to go back
/// to at the end, `key` the pending map key's length.
struct Fields<'a, 's> {
    f: &'a mut Flattener<'s>,
    restore: usize,
    key: Option<usize>,
}

impl Fields<'_, '_> {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        let len = self.f.enter(key);
        value.serialize(&mut *self.f)?;
        self.f.name.truncate(len);
        Ok(())
    }

    fn finish(self) -> Result<(), Error> {
        self.f.name.truncate(self.restore);
        Ok(())
    }
}

/// A map key as `serde_json` turns it into text.
fn key_text<T: Serialize + ?Sized>(key: &T) -> Result<String, Error> {
    match serde_json::to_value(key)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(ser::Error::custom(format!("map key must be text or a number, not {other}"))),
    }
}

impl<'a, 's> ser::Serializer for &'a mut Flattener<'s> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = SeqCollector<'a, 's>;
    type SerializeTuple = SeqCollector<'a, 's>;
    type SerializeTupleStruct = SeqCollector<'a, 's>;
    type SerializeTupleVariant = SeqCollector<'a, 's>;
    type SerializeMap = Fields<'a, 's>;
    type SerializeStruct = Fields<'a, 's>;
    type SerializeStructVariant = Fields<'a, 's>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.leaf(FlatValue::Bool(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.leaf(FlatValue::Int(v));
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(i), _) => self.serialize_i64(i),
            (_, Ok(u)) => self.serialize_u64(u),
            _ => Err(ser::Error::custom("number out of range")),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        // above i64::MAX the JSON number is not an i64: it reads back as a float
        match i64::try_from(v) {
            Ok(i) => self.serialize_i64(i),
            Err(_) => {
                self.leaf(FlatValue::Float(v as f64));
                Ok(())
            }
        }
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        match u64::try_from(v) {
            Ok(u) => self.serialize_u64(u),
            Err(_) => Err(ser::Error::custom("number out of range")),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.leaf(if v.is_finite() { FlatValue::Float(v) } else { FlatValue::Null });
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.leaf(FlatValue::Str(v.encode_utf8(&mut [0; 4])));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.leaf(FlatValue::Str(v));
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.text.clear();
        serde_json::to_writer(&mut self.text, v)?;
        self.array()
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.leaf(FlatValue::Null);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let len = self.enter(variant);
        value.serialize(&mut *self)?;
        self.name.truncate(len);
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        let restore = self.name.len();
        Ok(SeqCollector::start(self, restore))
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        let restore = self.enter(variant);
        Ok(SeqCollector::start(self, restore))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        let restore = self.name.len();
        Ok(Fields { f: self, restore, key: None })
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, Error> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        let restore = self.enter(variant);
        Ok(Fields { f: self, restore, key: None })
    }
}

macro_rules! seq_impl {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for SeqCollector<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.push(value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    };
}
seq_impl!(SerializeSeq, serialize_element);
seq_impl!(SerializeTuple, serialize_element);
seq_impl!(SerializeTupleStruct, serialize_field);
seq_impl!(SerializeTupleVariant, serialize_field);

impl ser::SerializeMap for Fields<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        let text = key_text(key)?;
        self.key = Some(self.f.enter(&text));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let len = self.key.take().ok_or_else(|| ser::Error::custom("map value without a key"))?;
        value.serialize(&mut *self.f)?;
        self.f.name.truncate(len);
        Ok(())
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Fields<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Fields<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}
