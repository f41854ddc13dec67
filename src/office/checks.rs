//! Smoke-query expectations: `> 0`, `>= 1000`, `= 42`, `!= 0`, `< 5`, `<= 5`, or a plain value.

use anyhow::{anyhow, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    Compare(Op, f64),
    Equals(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Expectation {
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        for (prefix, op) in [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ] {
            if let Some(rest) = t.strip_prefix(prefix) {
                let n: f64 = rest
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("{s:?}: after {prefix} a number is expected"))?;
                return Ok(Expectation::Compare(op, n));
            }
        }
        if t.is_empty() {
            return Err(anyhow!("an empty expectation; use e.g. \"> 0\""));
        }
        Ok(Expectation::Equals(t.to_string()))
    }

    /// Whether the query's single value meets the expectation.
    pub fn holds(&self, value: &str) -> bool {
        match self {
            Expectation::Equals(v) => value.trim() == v,
            Expectation::Compare(op, n) => {
                let Ok(x) = value.trim().parse::<f64>() else {
                    return false;
                };
                match op {
                    Op::Gt => x > *n,
                    Op::Ge => x >= *n,
                    Op::Lt => x < *n,
                    Op::Le => x <= *n,
                    Op::Eq => x == *n,
                    Op::Ne => x != *n,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        assert!(Expectation::parse("> 0").unwrap().holds("3"));
        assert!(!Expectation::parse("> 0").unwrap().holds("0"));
        assert!(!Expectation::parse("> 0").unwrap().holds("not a number"));
        assert!(Expectation::parse(">= 2.5").unwrap().holds("2.5"));
        assert!(Expectation::parse("!= 0").unwrap().holds("1"));
        assert!(Expectation::parse("ok").unwrap().holds(" ok "));
        assert!(Expectation::parse("> lots").is_err());
    }
}
