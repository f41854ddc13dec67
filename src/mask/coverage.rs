//! Which columns look like personal data, and whether a rule covers each: for `offsite masking
//! check` and for `strict: true`, where a refresh with `mask: true` refuses a dump with an uncovered
//! one. Production adds columns without telling the office: the night after `customers.phone2`
//! appears, the check names it and a strict refresh stops before its rows reach the dev server.
//!
//! The test is by name (split into words: `customerEmail`, `customer_email`, `e_mail`) and by the
//! type the dump's CREATE TABLE gives (`inet`, `macaddr`, an `email` domain). It errs on the side of asking: a product's
//! `name` is flagged too, and `keep` is how a rule says "looked at, not personal".

use std::sync::Mutex;

use serde::Serialize;

/// A column a dump holds, what it looks like and the rule that covers it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ColumnSeen {
    pub table: String,
    pub column: String,
    /// Why it looks personal (`email`, `phone`, ...); None when it does not.
    pub looks_like: Option<&'static str>,
    /// The rule's transformer (`email`, `keep`, ...); None when no rule names it.
    pub rule: Option<String>,
}

/// What a masking stream reports about the columns it sees.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Refuse (fail the stream with [`Uncovered`]) at the first table with an uncovered column
    /// that looks personal, before its rows pass.
    pub strict: bool,
    /// Every column seen, for `masking check`.
    pub seen: Mutex<Vec<ColumnSeen>>,
}

/// A strict refusal: the uncovered columns of one table.
#[derive(Debug, thiserror::Error)]
#[error("office.masking is strict and no rule covers {}: add a rule for each (`keep` if it is not personal)", describe(.0))]
pub struct Uncovered(pub Vec<ColumnSeen>);

fn describe(cols: &[ColumnSeen]) -> String {
    cols.iter()
        .map(|c| {
            format!(
                "{}.{} (looks like {})",
                c.table,
                c.column,
                c.looks_like.unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `err` is, or was caused by, a strict refusal.
pub fn is_uncovered(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<Uncovered>()
            || e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<Uncovered>())
    })
}

impl Coverage {
    /// Records a table's columns (name, type if the dump gives it) against its rules; in strict
    /// mode, an uncovered personal-looking one is an error.
    pub fn table(
        &self,
        table: &str,
        columns: &[(String, Option<String>)],
        rule_of: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Uncovered> {
        let cols: Vec<ColumnSeen> = columns
            .iter()
            .map(|(c, ty)| ColumnSeen {
                table: table.to_string(),
                column: c.clone(),
                looks_like: looks_personal(c, ty.as_deref()),
                rule: rule_of(c),
            })
            .collect();
        let uncovered: Vec<ColumnSeen> = cols
            .iter()
            .filter(|c| c.looks_like.is_some() && c.rule.is_none())
            .cloned()
            .collect();
        if let Ok(mut seen) = self.seen.lock() {
            seen.extend(cols);
        }
        if self.strict && !uncovered.is_empty() {
            return Err(Uncovered(uncovered));
        }
        Ok(())
    }
}

/// Words that make a column look personal, with what it looks like.
const WORDS: &[(&str, &str)] = &[
    ("email", "email"),
    ("mail", "email"),
    ("phone", "phone"),
    ("mobile", "phone"),
    ("tel", "phone"),
    ("telephone", "phone"),
    ("fax", "phone"),
    ("msisdn", "phone"),
    ("name", "name"),
    ("firstname", "name"),
    ("lastname", "name"),
    ("surname", "name"),
    ("fullname", "name"),
    ("username", "name"),
    ("address", "address"),
    ("street", "address"),
    ("zip", "address"),
    ("zipcode", "address"),
    ("postcode", "address"),
    ("postal", "address"),
    ("birth", "birth date"),
    ("birthday", "birth date"),
    ("birthdate", "birth date"),
    ("dob", "birth date"),
    ("born", "birth date"),
    ("ssn", "national id"),
    ("national", "national id"),
    ("passport", "national id"),
    ("tax", "national id"),
    ("iban", "bank account"),
    ("bic", "bank account"),
    ("account", "bank account"),
    ("card", "card number"),
    ("cc", "card number"),
    ("pan", "card number"),
    ("cvv", "card number"),
    ("ip", "ip address"),
    ("password", "secret"),
    ("passwd", "secret"),
    ("pwd", "secret"),
    ("token", "secret"),
    ("secret", "secret"),
    ("salary", "salary"),
    ("latitude", "location"),
    ("longitude", "location"),
    ("lat", "location"),
    ("lng", "location"),
    ("lon", "location"),
    ("gps", "location"),
];

/// Why a column looks personal, by its name's words or its type; None when it does not.
pub fn looks_personal(column: &str, ty: Option<&str>) -> Option<&'static str> {
    let words = words(column);
    let joined: String = words.concat();
    for (w, what) in WORDS {
        if words.iter().any(|x| x == w) {
            return Some(what);
        }
    }
    // Compounds written as one word: `emailaddress`, `phonenumber`, `e_mail` -> `email`.
    for (w, what) in WORDS.iter().filter(|(w, _)| w.len() >= 5) {
        if joined.contains(w) {
            return Some(what);
        }
    }
    let ty = ty.map(|t| t.to_ascii_lowercase()).unwrap_or_default();
    let base = ty.rsplit('.').next().unwrap_or("");
    if base.starts_with("inet") || base.starts_with("cidr") || base.starts_with("macaddr") {
        return Some("ip address");
    }
    if base.contains("email") {
        return Some("email");
    }
    None
}

/// `customerEmail2`, `customer_email`, `CUSTOMER-EMAIL` -> [customer, email].
fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() || c.is_ascii_digit() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_looking_columns_are_found_by_word_or_type() {
        for (c, want) in [
            ("email", "email"),
            ("customer_email", "email"),
            ("customerEmail", "email"),
            ("e_mail", "email"),
            ("phone2", "phone"),
            ("mobile_no", "phone"),
            ("full_name", "name"),
            ("date_of_birth", "birth date"),
            ("ip", "ip address"),
            ("last_login_ip", "ip address"),
            ("password_hash", "secret"),
            ("iban", "bank account"),
            ("emailaddress", "email"),
        ] {
            assert_eq!(looks_personal(c, None), Some(want), "{c}");
        }
        for c in [
            "id",
            "total",
            "created_at",
            "description",
            "shipping_fee",
            "sku",
            "tipping",
        ] {
            assert_eq!(looks_personal(c, None), None, "{c}");
        }
        assert_eq!(looks_personal("origin", Some("inet")), Some("ip address"));
        assert_eq!(
            looks_personal("contact", Some("public.email")),
            Some("email")
        );
    }

    #[test]
    fn strict_refuses_an_uncovered_personal_column() {
        let cov = Coverage {
            strict: true,
            ..Default::default()
        };
        let cols = |v: &[&str]| v.iter().map(|c| (c.to_string(), None)).collect::<Vec<_>>();
        let rules = |c: &str| (c == "email").then(|| "email".to_string());
        assert!(cov
            .table("public.customers", &cols(&["id", "email"]), &rules)
            .is_ok());
        let e = cov
            .table(
                "public.customers",
                &cols(&["id", "email", "phone2"]),
                &rules,
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("public.customers.phone2 (looks like phone)"),
            "{e}"
        );
        assert_eq!(cov.seen.lock().unwrap().len(), 5);
    }
}
