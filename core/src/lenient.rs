//! Pieces for reading Didit's JSON leniently: a value of an unexpected type counts as absent
//! rather than failing the whole body, since Didit adds and reshapes fields over time.

use serde::de::{IgnoredAny, SeqAccess};

/// Visitor methods that answer every scalar and `null` with `$value`, so a visitor only writes
/// code for the shapes it reads.
macro_rules! scalars_yield {
    ($out:ty, $value:expr) => {
        fn visit_unit<E>(self) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_none<E>(self) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_bool<E>(self, _: bool) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<$out, E> {
            Ok($value)
        }
    };
}
pub(crate) use scalars_yield;

/// Reads past a sequence without building anything.
pub(crate) fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}
