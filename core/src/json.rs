//! JSON text read into typed values: `serde_json::from_str`, except that a struct is read only
//! from a JSON object.
//!
//! A derived `Deserialize` of a struct accepts an object or an array of its fields in order,
//! and serde_json compiles both readers into every struct type it reads (the array one with a
//! reader per field type): a sizeable share of the upload, for a form nothing the edge reads
//! uses. [`from_str`] asks serde_json for every struct as a map, at any depth, so the array
//! readers are never compiled. An array where a struct is expected is refused, as any other
//! wrong type is.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};

/// Reads `text` as one `T`, a struct only from an object (see the module).
pub fn from_str<'de, T: Deserialize<'de>>(text: &'de str) -> serde_json::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = T::deserialize(Objects(&mut deserializer))?;
    deserializer.end()?;
    Ok(value)
}

/// A deserializer that reads every struct as a map, at any depth: it hands serde_json
/// visitors, seeds and accessors wrapped so that whatever they read next is wrapped too.
struct Objects<D>(D);

/// A visitor, wrapped. `STRUCT`: it reads a struct, and an array is refused before the
/// struct's own array reader is reached (so that reader is never compiled).
struct Wrap<V, const STRUCT: bool>(V);

/// A seed, whose value is read through [`Objects`].
struct Seed<S>(S);

/// A map or an array being read, whose values are read through [`Objects`].
struct Access<A>(A);

/// Hands each of `names` to the inner deserializer with the visitor wrapped.
macro_rules! forward {
    ($($name:ident),+ $(,)?) => {
        $(fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$name(Wrap::<V, false>(visitor))
        })+
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Objects<D> {
    type Error = D::Error;

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
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_unit_struct(name, Wrap::<V, false>(visitor))
    }

    /// Unwrapped: serde_json reads a `RawValue` through a newtype of its own, with a visitor
    /// that must see serde_json's own accessors.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap::<V, false>(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_tuple_struct(name, len, Wrap::<V, false>(visitor))
    }

    /// The one change: a struct is read as a map.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Wrap::<V, true>(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0
            .deserialize_enum(name, variants, Wrap::<V, false>(visitor))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Objects(deserializer))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(seed)?;
        Ok((value, Access(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap::<V, false>(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap::<V, true>(visitor))
    }
}

/// Hands each of `names` (taking one value) to the inner visitor.
macro_rules! visit {
    ($($name:ident($type:ty)),+ $(,)?) => {
        $(fn $name<E: de::Error>(self, value: $type) -> Result<V::Value, E> {
            self.0.$name(value)
        })+
    };
}

impl<'de, V: Visitor<'de>, const STRUCT: bool> Visitor<'de> for Wrap<V, STRUCT> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(formatter)
    }

    visit!(
        visit_bool(bool),
        visit_i64(i64),
        visit_i128(i128),
        visit_u64(u64),
        visit_u128(u128),
        visit_f64(f64),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Objects(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Objects(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if STRUCT {
            Err(de::Error::invalid_type(Unexpected::Seq, &self))
        } else {
            self.0.visit_seq(Access(seq))
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Access(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Access(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[derive(Debug, PartialEq, serde::Deserialize)]
    enum Shape {
        Dot,
        Line { pairs: Vec<Pair> },
    }

    #[derive(Debug, serde::Deserialize)]
    struct Nested<'a> {
        pair: Option<Pair>,
        shapes: Vec<Shape>,
        #[serde(borrow)]
        raw: &'a RawValue,
    }

    #[test]
    fn structs_at_any_depth_are_read_from_objects_only() {
        let text = r#"{"pair": {"name": "a", "count": 1}, "raw": [1, {"b": 2}],
            "shapes": ["Dot", {"Line": {"pairs": [{"name": "b", "count": 2}]}}]}"#;
        let ours: Nested<'_> = from_str(text).expect("reads");
        let theirs: Nested<'_> = serde_json::from_str(text).expect("reads");
        assert_eq!(ours.pair, theirs.pair);
        assert_eq!(ours.shapes, theirs.shapes);
        assert_eq!(ours.raw.get(), r#"[1, {"b": 2}]"#);
        for arrays in [
            r#"{"pair": ["a", 1], "shapes": [], "raw": 0}"#,
            r#"{"pair": null, "shapes": [{"Line": [[]]}], "raw": 0}"#,
            r#"{"pair": null, "shapes": [{"Line": {"pairs": [["b", 2]]}}], "raw": 0}"#,
        ] {
            assert!(
                serde_json::from_str::<Nested<'_>>(arrays).is_ok(),
                "{arrays}"
            );
            assert!(from_str::<Nested<'_>>(arrays).is_err(), "{arrays}");
        }
    }
}
