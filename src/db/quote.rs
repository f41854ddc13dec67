//! Quoting identifiers: the one place offsite writes a database, table or schema name into SQL.
//!
//! Names reach SQL from the config, from the office's own derived names, and from what a dump
//! recorded (table names in a manifest, which a hacked production host writes): so a name is
//! always quoted, never pasted.

/// `"name"` for PostgreSQL, with `"` doubled.
pub fn pg(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `` `name` `` for MariaDB/MySQL, with `` ` `` doubled.
pub fn my(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A table name as pg_dump writes it (`public.t`, `"My Schema"."odd""name"`), re-quoted part by
/// part; `None` when it is not such a name. pg_dump quotes what needs it, so what it wrote parses;
/// what does not parse was not written by pg_dump and is never pasted into a query.
pub fn pg_qualified(name: &str) -> Option<String> {
    let parts = split_pg_name(name)?;
    Some(parts.iter().map(|p| pg(p)).collect::<Vec<_>>().join("."))
}

/// The unquoted parts of a dotted PostgreSQL name.
fn split_pg_name(name: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
            if part.is_empty() {
                return None;
            }
        } else {
            // An unquoted identifier: pg_dump leaves only lower-case letters, digits, `_` and `$`
            // (and non-ASCII letters) unquoted, and never a leading digit or `$`.
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() && !c.is_uppercase() || c == '_' || c == '$' {
                    part.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            let first = part.chars().next()?;
            if first.is_ascii_digit() || first == '$' {
                return None;
            }
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return None,
        }
    }
    (parts.len() <= 3).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_double_the_quote_character() {
        assert_eq!(pg("a\"b"), "\"a\"\"b\"");
        assert_eq!(my("a`b"), "`a``b`");
    }

    #[test]
    fn pg_dump_names_parse_and_anything_else_is_refused() {
        assert_eq!(
            pg_qualified("public.t").as_deref(),
            Some("\"public\".\"t\"")
        );
        assert_eq!(
            pg_qualified("\"My Schema\".\"odd\"\"name\"").as_deref(),
            Some("\"My Schema\".\"odd\"\"name\"")
        );
        assert_eq!(pg_qualified("t").as_deref(), Some("\"t\""));
        assert_eq!(
            pg_qualified("public.t_1$x").as_deref(),
            Some("\"public\".\"t_1$x\"")
        );
        for hostile in [
            "t; DROP DATABASE x",
            "(SELECT lo_export(1, '/tmp/x')) s",
            "public.t WHERE pg_sleep(10) IS NULL",
            "public.T",
            "\"unterminated",
            "\"\"",
            "",
            "a.",
            "1t",
            "a.b.c.d",
            "public.t--",
        ] {
            assert_eq!(pg_qualified(hostile), None, "{hostile}");
        }
    }
}
