//! Unit enums written and read as one of their names, without serde's derived enum code.
//!
//! A derived `Deserialize` of a unit enum compiles an enum visitor, a variant visitor (for
//! names, bytes and indices) and serde_json's enum access for every type, and a derived
//! `Serialize` a unit-variant call per type: together about a KiB of WebAssembly each, paid by
//! every isolate that loads the worker. [`by_name!`] writes the name as a string and reads it
//! back through one shared string reader. On the wire nothing changes: serde_json writes a
//! derived unit variant as its name, and reads only a name (or a one-key object, which the
//! edge never writes) as one.

use alloc::string::String;
use serde::{de, Deserialize, Deserializer};

/// Implements `Serialize` and `Deserialize` for a unit enum as the names given, each variant
/// once: `by_name!(Level { Low = "low", High = "high" });`.
macro_rules! by_name {
    ($ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(match self {
                    $(Self::$variant => $name,)+
                })
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::named::deserialize(deserializer, &[$($name),+], |name| match name {
                    $($name => Some(Self::$variant),)+
                    _ => None,
                })
            }
        }
    };
}
pub(crate) use by_name;

/// Reads a name and looks it up with `from_name`; `names` are listed in the error.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    names: &'static [&'static str],
    from_name: fn(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let name = String::deserialize(deserializer)?;
    from_name(&name).ok_or_else(|| de::Error::unknown_variant(&name, names))
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use serde::{Deserialize, Serialize};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Derived {
        First,
        SecondOne,
    }

    #[derive(Debug, PartialEq)]
    enum Named {
        First,
        SecondOne,
    }
    by_name!(Named {
        First = "first",
        SecondOne = "second_one",
    });

    #[test]
    fn writes_and_reads_what_a_derived_unit_enum_does() {
        for (derived, named) in [
            (Derived::First, Named::First),
            (Derived::SecondOne, Named::SecondOne),
        ] {
            let text = serde_json::to_string(&derived).expect("json");
            assert_eq!(serde_json::to_string(&named).expect("json"), text);
            assert_eq!(serde_json::from_str::<Named>(&text).ok(), Some(named));
        }
        for not_a_name in [r#""third""#, "1", "null", "[]"] {
            assert!(serde_json::from_str::<Derived>(not_a_name).is_err());
            assert!(serde_json::from_str::<Named>(not_a_name).is_err());
        }
        // The same words; only the position, which serde_json adds while it reads, is gone.
        let named = serde_json::from_str::<Named>(r#""third""#).expect_err("unknown");
        let derived = serde_json::from_str::<Derived>(r#""third""#).expect_err("unknown");
        assert!(derived.to_string().starts_with(&named.to_string()));
    }
}
