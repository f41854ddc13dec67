//! The transformers: each turns one column value into its masked value, deterministically.
//!
//! Every pseudonym is derived from HMAC-SHA256(secret, transformer tag, 0, value): the same value
//! masks to the same output in every table, every engine and every run with the same secret (so
//! joins on masked columns still hold), and without the secret the output says nothing about the
//! input. The tag is the transformer's kind, not the column: `customers.email` and
//! `orders.customer_email` agree.
//!
//! Uniqueness: `email` keeps 64 bits of the HMAC in the local part and `hash` as many as its
//! `length` (4 bits per hex digit), so distinct inputs collide with probability below n²/2^(bits+1):
//! for 10 million distinct emails, about 3 in a million. A unique column therefore stays unique in
//! practice with `email` or `hash` (length 16 or more); `name`, `digits`, `redact`, `date_shift`
//! and `number_noise` keep formats, not uniqueness, and should not be used on unique columns.

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::names::{FIRST, LAST};

/// A column's rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Covered on purpose: the value is not personal.
    Keep,
    Null,
    Const(String),
    Hash {
        length: usize,
    },
    Email {
        keep_domain: bool,
    },
    Name,
    FirstName,
    LastName,
    /// Every digit replaced, everything else kept: `+1 (555) 010-7788` keeps its shape.
    Digits,
    /// All but the first and last characters replaced by `*`.
    Redact {
        keep_first: usize,
        keep_last: usize,
    },
    /// A `YYYY-MM-DD...` value moved by up to `days` days either way (the rest kept).
    DateShift {
        days: u32,
    },
    /// A number multiplied by a factor within ±`percent`%, its decimals kept.
    NumberNoise {
        percent: f64,
    },
    /// Values inside a JSON document, by path (`email`, `contact.phone`, `items[].name`).
    Json(Vec<(Vec<PathPart>, Transform)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    Key(String),
    /// `[]`: every element of an array.
    Each,
}

/// The transformers' names, for messages.
pub const NAMES: &str = "keep, null, const, hash, email, name, first_name, last_name, digits, redact, date_shift, number_noise, json";

impl Transform {
    /// From the config's YAML: a name (`email`), or a one-key map with options
    /// (`{ hash: { length: 16 } }`, `{ const: "1 Main St" }`, `{ json: { "contact.email": email } }`).
    pub fn parse(v: &serde_norway::Value) -> Result<Self> {
        use serde_norway::Value;
        match v {
            Value::String(s) => Self::named(s, None),
            Value::Null => Ok(Self::Null),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, opts) = m.iter().next().context("empty rule")?;
                let k = k.as_str().context("a rule's name must be text")?;
                Self::named(k, Some(opts))
            }
            _ => bail!("a rule is a transformer's name or a one-key map (one of: {NAMES})"),
        }
    }

    fn named(name: &str, opts: Option<&serde_norway::Value>) -> Result<Self> {
        let num = |key: &str, default: f64| -> Result<f64> {
            match opts.and_then(|o| o.get(key)) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .with_context(|| format!("{name}.{key} must be a number")),
            }
        };
        let flag = |key: &str| {
            opts.and_then(|o| o.get(key))
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        };
        Ok(match name {
            "keep" => Self::Keep,
            "null" => Self::Null,
            "const" => match opts {
                Some(serde_norway::Value::String(s)) => Self::Const(s.clone()),
                Some(serde_norway::Value::Number(n)) => Self::Const(n.to_string()),
                Some(serde_norway::Value::Bool(b)) => Self::Const(b.to_string()),
                _ => bail!("const needs a value: {{ const: \"1 Main St\" }}"),
            },
            "hash" => {
                let length = num("length", 16.0)?;
                if !(1.0..=64.0).contains(&length) || length.fract() != 0.0 {
                    bail!(
                        "hash.length must be a whole number from 1 to 64 (hex digits of the HMAC)"
                    );
                }
                Self::Hash {
                    length: length as usize,
                }
            }
            "email" => Self::Email {
                keep_domain: flag("keep_domain"),
            },
            "name" => Self::Name,
            "first_name" => Self::FirstName,
            "last_name" => Self::LastName,
            "digits" => Self::Digits,
            "redact" => Self::Redact {
                keep_first: num("keep_first", 0.0)? as usize,
                keep_last: num("keep_last", 0.0)? as usize,
            },
            "date_shift" => {
                let days = num("days", 365.0)?;
                if !(1.0..=36500.0).contains(&days) {
                    bail!("date_shift.days must be from 1 to 36500");
                }
                Self::DateShift { days: days as u32 }
            }
            "number_noise" => {
                let percent = num("percent", 10.0)?;
                if !(0.0..=100.0).contains(&percent) {
                    bail!("number_noise.percent must be from 0 to 100");
                }
                Self::NumberNoise { percent }
            }
            "json" => {
                let Some(serde_norway::Value::Mapping(m)) = opts else {
                    bail!("json needs paths: {{ json: {{ \"contact.email\": email }} }}");
                };
                let mut paths = Vec::new();
                for (k, v) in m {
                    let path = k.as_str().context("a json path must be text")?;
                    let t = Self::parse(v).with_context(|| format!("json path {path}"))?;
                    if matches!(t, Self::Json(_)) {
                        bail!("json path {path}: a json rule inside a json rule");
                    }
                    paths.push((parse_path(path)?, t));
                }
                Self::Json(paths)
            }
            other => bail!("unknown transformer {other:?} (one of: {NAMES})"),
        })
    }

    /// The transformer's name, as the config writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Null => "null",
            Self::Const(_) => "const",
            Self::Hash { .. } => "hash",
            Self::Email { .. } => "email",
            Self::Name => "name",
            Self::FirstName => "first_name",
            Self::LastName => "last_name",
            Self::Digits => "digits",
            Self::Redact { .. } => "redact",
            Self::DateShift { .. } => "date_shift",
            Self::NumberNoise { .. } => "number_noise",
            Self::Json(_) => "json",
        }
    }

    /// The masked value of `value` (None: SQL NULL). NULL stays NULL, whatever the rule.
    pub fn apply(&self, key: &Key, value: Option<&str>) -> Result<Option<String>> {
        let Some(v) = value else {
            return Ok(None);
        };
        Ok(match self {
            Self::Keep => Some(v.to_string()),
            Self::Null => None,
            Self::Const(c) => Some(c.clone()),
            Self::Hash { length } => Some(key.hex("hash", v, *length)),
            Self::Email { keep_domain } => {
                let domain = match v.rsplit_once('@') {
                    Some((_, d)) if *keep_domain && !d.is_empty() => d,
                    _ => "example.invalid",
                };
                Some(format!("u{}@{domain}", key.hex("email", v, 16)))
            }
            Self::Name => {
                let d = key.mac("name", v);
                Some(format!(
                    "{} {}",
                    pick(FIRST, &d[0..4]),
                    pick(LAST, &d[4..8])
                ))
            }
            Self::FirstName => Some(pick(FIRST, &key.mac("first_name", v)[0..4]).to_string()),
            Self::LastName => Some(pick(LAST, &key.mac("last_name", v)[0..4]).to_string()),
            Self::Digits => Some(digits(key, v)),
            Self::Redact {
                keep_first,
                keep_last,
            } => Some(redact(v, *keep_first, *keep_last)),
            Self::DateShift { days } => Some(date_shift(key, v, *days)?),
            Self::NumberNoise { percent } => Some(number_noise(key, v, *percent)?),
            Self::Json(paths) => Some(json(key, v, paths)?),
        })
    }
}

/// The HMAC key: the masking secret.
pub struct Key(Hmac<Sha256>);

impl Key {
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < 16 {
            bail!("the masking secret is shorter than 16 bytes: make one with `head -c 32 /dev/urandom | base64`");
        }
        Ok(Self(
            Hmac::<Sha256>::new_from_slice(secret).context("the masking secret")?,
        ))
    }

    /// A random key, for a stream whose output nobody keeps (`masking check`).
    pub fn ephemeral() -> Self {
        let secret: [u8; 32] = rand::random();
        Self(
            Hmac::<Sha256>::new_from_slice(&secret)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
        )
    }

    fn mac(&self, tag: &str, value: &str) -> [u8; 32] {
        let mut m = self.0.clone();
        m.update(tag.as_bytes());
        m.update(&[0]);
        m.update(value.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// The first `len` hex digits of the HMAC.
    fn hex(&self, tag: &str, value: &str, len: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mac = self.mac(tag, value);
        let mut out = String::with_capacity(len);
        for i in 0..len.min(64) {
            let b = mac[i / 2];
            let nibble = if i % 2 == 0 { b >> 4 } else { b & 0x0f };
            out.push(char::from(DIGITS[usize::from(nibble)]));
        }
        out
    }
}

fn pick<'a>(list: &[&'a str], bytes: &[u8]) -> &'a str {
    let n = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    list[n % list.len()]
}

/// A stream of pseudo-random digits for `value`, as long as needed (HMAC blocks chained).
fn digits(key: &Key, v: &str) -> String {
    let mut block = key.mac("digits", v);
    let mut used = 0;
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_ascii_digit() {
            if used == block.len() {
                block = key.mac("digits+", &hex::encode(block));
                used = 0;
            }
            // 250 = 25 * 10: bytes above it are skipped, so every digit is equally likely.
            while block[used] >= 250 {
                used += 1;
                if used == block.len() {
                    block = key.mac("digits+", &hex::encode(block));
                    used = 0;
                }
            }
            out.push(char::from(b'0' + block[used] % 10));
            used += 1;
        } else {
            out.push(c);
        }
    }
    out
}

fn redact(v: &str, first: usize, last: usize) -> String {
    if v.is_ascii() {
        let n = v.len();
        let mut out = vec![b'*'; n];
        let head = first.min(n);
        out[..head].copy_from_slice(&v.as_bytes()[..head]);
        let tail = n.saturating_sub(last).max(head);
        out[tail..].copy_from_slice(&v.as_bytes()[tail..]);
        return String::from_utf8(out).unwrap_or_default();
    }
    let n = v.chars().count();
    v.chars()
        .enumerate()
        .map(|(i, c)| if i < first || i + last >= n { c } else { '*' })
        .collect()
}

fn date_shift(key: &Key, v: &str, days: u32) -> Result<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let head = v.get(..10).unwrap_or(v);
    // `infinity`, BC dates and the like hold no personal date: they stay as they are.
    let Ok(date) = time::Date::parse(head, fmt) else {
        return Ok(v.to_string());
    };
    let d = key.mac("date_shift", v);
    let span = 2 * u64::from(days) + 1;
    let shift = (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % span)
        as i64
        - i64::from(days);
    // Years 1 to 9999, which every engine takes: near either end the shift goes the other way.
    let moved = [shift, -shift]
        .into_iter()
        .filter_map(|s| date.checked_add(time::Duration::days(s)))
        .find(|x| (1..=9999).contains(&x.year()))
        .unwrap_or(date);
    Ok(format!("{}{}", moved.format(fmt)?, &v[head.len()..]))
}

fn number_noise(key: &Key, v: &str, percent: f64) -> Result<String> {
    let t = v.trim();
    let x: f64 = t
        .parse()
        .with_context(|| format!("number_noise: {v:?} is not a number"))?;
    let d = key.mac("number_noise", v);
    let u = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) as f64
        / u64::MAX as f64;
    let y = x * (1.0 + (2.0 * u - 1.0) * percent / 100.0);
    let decimals = t.split_once('.').map(|(_, f)| f.len()).unwrap_or(0);
    Ok(format!("{y:.decimals$}"))
}

fn parse_path(p: &str) -> Result<Vec<PathPart>> {
    let p = p.strip_prefix("$.").unwrap_or(p);
    let mut out = Vec::new();
    for seg in p.split('.') {
        let (name, each) = match seg.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (seg, false),
        };
        if name.is_empty() && !each {
            bail!("json path {p:?} has an empty part");
        }
        if !name.is_empty() {
            out.push(PathPart::Key(name.to_string()));
        }
        if each {
            out.push(PathPart::Each);
        }
    }
    Ok(out)
}

fn json(key: &Key, v: &str, paths: &[(Vec<PathPart>, Transform)]) -> Result<String> {
    let mut doc: serde_json::Value =
        serde_json::from_str(v).with_context(|| "json: the value is not a JSON document")?;
    for (path, t) in paths {
        visit(&mut doc, path, &mut |leaf| {
            let text = match leaf {
                serde_json::Value::Null => return Ok(()),
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Ok(()),
            };
            let was_number = leaf.is_number();
            *leaf = match t.apply(key, Some(&text))? {
                None => serde_json::Value::Null,
                Some(s) if was_number => s
                    .parse::<serde_json::Number>()
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::String(s)),
                Some(s) => serde_json::Value::String(s),
            };
            Ok(())
        })?;
    }
    Ok(serde_json::to_string(&doc)?)
}

fn visit(
    v: &mut serde_json::Value,
    path: &[PathPart],
    f: &mut dyn FnMut(&mut serde_json::Value) -> Result<()>,
) -> Result<()> {
    match path.split_first() {
        None => f(v),
        Some((PathPart::Key(k), rest)) => match v.get_mut(k.as_str()) {
            Some(child) => visit(child, rest, f),
            None => Ok(()),
        },
        Some((PathPart::Each, rest)) => match v.as_array_mut() {
            Some(items) => items.iter_mut().try_for_each(|i| visit(i, rest, f)),
            None => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s.as_bytes()).unwrap()
    }

    fn rule(yaml: &str) -> Transform {
        Transform::parse(&serde_norway::from_str(yaml).unwrap()).unwrap()
    }

    fn apply(t: &Transform, k: &Key, v: &str) -> String {
        t.apply(k, Some(v)).unwrap().unwrap()
    }

    #[test]
    fn the_same_value_and_secret_give_the_same_output_another_secret_another() {
        let (a, b) = (key("0123456789abcdef-one"), key("0123456789abcdef-two"));
        let email = rule("email");
        let x = apply(&email, &a, "Jane.Doe@example.com");
        assert_eq!(x, apply(&email, &a, "Jane.Doe@example.com"));
        assert_ne!(x, apply(&email, &b, "Jane.Doe@example.com"));
        assert!(
            x.ends_with("@example.invalid") && x.len() == 1 + 16 + 16,
            "{x}"
        );
        let kept = apply(&rule("{ email: { keep_domain: true } }"), &a, "j@corp.test");
        assert!(kept.ends_with("@corp.test"), "{kept}");
        assert_eq!(
            rule("email").apply(&a, None).unwrap(),
            None,
            "NULL stays NULL"
        );
    }

    #[test]
    fn formats_are_kept_where_the_rule_says() {
        let k = key("0123456789abcdef-one");
        let phone = apply(&rule("digits"), &k, "+1 (555) 010-7788");
        assert_eq!(phone.len(), "+1 (555) 010-7788".len());
        assert!(phone.starts_with("+") && phone.contains(" (") && phone.contains(") "));
        assert_ne!(phone, "+1 (555) 010-7788");
        assert_eq!(
            apply(
                &rule("{ redact: { keep_first: 1, keep_last: 2 } }"),
                &k,
                "Zoë Ünal"
            ),
            "Z*****al"
        );
        assert_eq!(apply(&rule("{ hash: { length: 8 } }"), &k, "x").len(), 8);
        let name = apply(&rule("name"), &k, "Jane Doe");
        assert_eq!(name.split(' ').count(), 2, "{name}");
        let d = apply(
            &rule("{ date_shift: { days: 30 } }"),
            &k,
            "1980-02-29 12:00:00",
        );
        assert!(d.ends_with(" 12:00:00") && d.starts_with("19"), "{d}");
        let n = apply(&rule("{ number_noise: { percent: 10 } }"), &k, "100.00");
        let v: f64 = n.parse().unwrap();
        assert!(
            (90.0..=110.0).contains(&v) && n.split_once('.').unwrap().1.len() == 2,
            "{n}"
        );
        assert_eq!(rule("null").apply(&k, Some("x")).unwrap(), None);
        assert_eq!(
            apply(&rule("{ const: \"1 Main St\" }"), &k, "x"),
            "1 Main St"
        );
    }

    #[test]
    fn json_paths_mask_inside_documents() {
        let k = key("0123456789abcdef-one");
        let t = rule(
            "{ json: { \"contact.email\": email, \"phones[]\": digits, \"items[].name\": name } }",
        );
        let out = apply(
            &t,
            &k,
            r#"{"contact":{"email":"a@b.c","city":"X"},"phones":["555-1234",null],"items":[{"name":"Jane"}]}"#,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["contact"]["email"], apply(&rule("email"), &k, "a@b.c"));
        assert_eq!(v["contact"]["city"], "X");
        assert_eq!(v["phones"][1], serde_json::Value::Null);
        assert_ne!(v["phones"][0], "555-1234");
        assert_ne!(v["items"][0]["name"], "Jane");
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let bad = |y: &str| {
            Transform::parse(&serde_norway::from_str(y).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(bad("emial").contains("unknown transformer"));
        assert!(bad("{ hash: { length: 99 } }").contains("1 to 64"));
        assert!(bad("{ const: }").contains("const needs a value"));
        assert!(Key::new(b"short").is_err());
    }
}
