//! JSON text read into typed values: `serde_json::from_str`, except that a struct is read only
//! from a JSON object.
//!
//! A derived `Deserialize` of a struct accepts an object or an array of its fields in order,
//! and serde_json compiles both readers into every struct type it reads (the array one with a
//! reader per field type): a sizeable share of the upload, for a form nothing the edge reads
//! uses. [`from_str`] asks for the top-level struct as a map, so its array reader is never
//! compiled. A top-level array where a struct is expected is refused, as any other wrong type is.

use serde::de::{Deserialize, Deserializer, Visitor};
use serde_json::de::StrRead;

/// Reads `text` as one `T`, a struct only from an object (see the module).
pub fn from_str<'de, T: Deserialize<'de>>(text: &'de str) -> serde_json::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = T::deserialize(Objects(&mut deserializer))?;
    deserializer.end()?;
    Ok(value)
}

/// serde_json's deserializer, with a struct read as a map.
struct Objects<'a, 'de>(&'a mut serde_json::Deserializer<StrRead<'de>>);

/// Hands each of `names` to serde_json unchanged.
macro_rules! forward {
    ($($name:ident),+ $(,)?) => {
        $(fn $name<V: Visitor<'de>>(self, visitor: V) -> serde_json::Result<V::Value> {
            self.0.$name(visitor)
        })+
    };
}

impl<'de> Deserializer<'de> for Objects<'_, 'de> {
    type Error = serde_json::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        self.0.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    /// The one change: a struct is read as a map.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        self.0.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        self.0.deserialize_enum(name, variants, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;
    use serde_json::value::RawValue;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Pair {
        name: String,
        count: u32,
    }

    #[test]
    fn reads_what_serde_json_reads_but_a_struct_only_from_an_object() {
        let object = r#"{"count": 2, "name": "a"}"#;
        assert_eq!(
            from_str::<Pair>(object).ok(),
            serde_json::from_str::<Pair>(object).ok()
        );
        assert!(serde_json::from_str::<Pair>(r#"["a", 2]"#).is_ok());
        assert!(from_str::<Pair>(r#"["a", 2]"#).is_err());
        assert!(from_str::<Pair>(r#"{"name": "a"}"#).is_err());
        assert!(from_str::<Pair>(r#"{"count": 2, "name": "a"} x"#).is_err());
        assert_eq!(
            from_str::<Vec<Option<String>>>(r#"["a", null]"#).ok(),
            Some(alloc::vec![Some("a".into()), None])
        );
        let raw: &RawValue = from_str(r#" {"a": [1]} "#).expect("raw");
        assert_eq!(raw.get(), r#"{"a": [1]}"#);
    }
}
