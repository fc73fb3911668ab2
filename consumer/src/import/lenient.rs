//! Field types that take what real logs hold: a string where a string is
//! expected and nothing otherwise (a number, `null`, an object), and a
//! number given as a number or as a numeric string, as edX players send
//! either. A field of the wrong type is then absent, never a reason to
//! lose the whole line.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A string, or nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Text<'a>(pub Option<Cow<'a, str>>);

impl Text<'_> {
    /// The string when present and not blank, trimmed.
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
}

/// A finite number, or nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub Option<f64>);

struct AnyVisitor<T>(std::marker::PhantomData<T>);

macro_rules! ignore_the_rest {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Self::Value::from_f64(v as f64))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Self::Value::from_f64(v as f64))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Self::Value::from_f64(v))
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

trait FromF64 {
    fn from_f64(v: f64) -> Self;
}

impl FromF64 for Text<'_> {
    fn from_f64(_: f64) -> Self {
        Text(None)
    }
}

impl FromF64 for Number {
    fn from_f64(v: f64) -> Self {
        Number(v.is_finite().then_some(v))
    }
}

impl<'de: 'a, 'a> Visitor<'de> for AnyVisitor<Text<'a>> {
    type Value = Text<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v))))
    }

    ignore_the_rest!();
}

impl<'de> Visitor<'de> for AnyVisitor<Number> {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Number(
            v.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        ))
    }

    ignore_the_rest!();
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor::<Text<'a>>(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor::<Number>(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        text: Text<'a>,
        #[serde(default)]
        number: Number,
    }

    fn probe(json: &str) -> (Option<String>, Option<f64>) {
        let p: Probe<'_> = serde_json::from_str(json).unwrap();
        (p.text.get().map(str::to_owned), p.number.0)
    }

    #[test]
    fn wrong_types_are_absent_not_errors() {
        assert_eq!(
            probe(r#"{"text":"a","number":1.5}"#),
            (Some("a".into()), Some(1.5))
        );
        assert_eq!(
            probe(r#"{"text":" b\n","number":"2.25"}"#),
            (Some("b".into()), Some(2.25))
        );
        assert_eq!(
            probe(r#"{"text":"a\"q","number":7}"#),
            (Some("a\"q".into()), Some(7.0))
        );
        assert_eq!(probe(r#"{"text":5,"number":"x"}"#), (None, None));
        assert_eq!(
            probe(r#"{"text":{"a":[1,{"b":2}]},"number":[1]}"#),
            (None, None)
        );
        assert_eq!(probe(r#"{"text":null,"number":null}"#), (None, None));
        assert_eq!(probe(r#"{"text":"  ","number":"NaN"}"#), (None, None));
        assert_eq!(probe(r#"{}"#), (None, None));
    }
}
