//! Requests that satisfy a request match: a value for each string condition, found without
//! guessing (a regex candidate is kept only when the `regex` crate confirms a whole-value match).

use regex::Regex;

use crate::api::spec::{RequestMatch, StringMatch};

use super::super::Request;

/// `base` changed to carry what `wanted` asks for: its headers, cookie, path, query parameters
/// and method. An error names the condition no value could be found for.
pub fn matching_request(base: &Request, wanted: &RequestMatch) -> Result<Request, String> {
    let mut request = base.clone();
    for (name, condition) in &wanted.headers {
        let value = value_for(condition).map_err(|why| format!("header {name}: {why}"))?;
        request = request.header(name, &value);
    }
    if let Some(cookie) = &wanted.cookie {
        request = request.cookie(&cookie.name, cookie.value());
    }
    if let Some(uri) = &wanted.uri {
        request.path = path_for(uri).map_err(|why| format!("uri: {why}"))?;
    }
    for (name, condition) in &wanted.query_params {
        let value = value_for(condition).map_err(|why| format!("query {name}: {why}"))?;
        request.query.insert(name.clone(), value);
    }
    if let Some(method) = &wanted.method {
        request.method = method.to_ascii_uppercase();
    }
    Ok(request)
}

/// A value `condition` holds for: the exact value, the prefix followed by `x`, or a string the
/// regex matches as a whole.
pub fn value_for(condition: &StringMatch) -> Result<String, String> {
    if let Some(exact) = &condition.exact {
        return Ok(exact.clone());
    }
    if let Some(prefix) = &condition.prefix {
        return Ok(format!("{prefix}x"));
    }
    if let Some(pattern) = &condition.regex {
        return whole_match(pattern);
    }
    Err("the condition sets none of exact, prefix or regex".to_owned())
}

/// A path `condition` holds for. A prefix is used as it is: every data plane's prefix match
/// (string-wise in Istio and ASM, segment-wise in Kuma and ingress-nginx) admits the prefix
/// itself, while a longer string would leave the segment in Kuma's and nginx's matching.
pub fn path_for(condition: &StringMatch) -> Result<String, String> {
    let path = match &condition.prefix {
        Some(prefix) => prefix.clone(),
        None => value_for(condition)?,
    };
    Ok(if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    })
}

/// A string `pattern` (RE2 syntax) matches as a whole, among simple candidates derived from it:
/// the pattern walked with each optional atom left out or kept once, its literal prefix and its
/// top-level alternatives. An error when none of them matches (or the pattern is invalid).
pub fn whole_match(pattern: &str) -> Result<String, String> {
    let anchored = Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|error| format!("regex `{pattern}` is invalid: {error}"))?;
    let chars: Vec<char> = pattern.chars().collect();
    let mut candidates = vec![
        Walker::new(&chars, false).sequence(),
        Walker::new(&chars, true).sequence(),
    ];
    let prefix = literal_prefix(&chars);
    for branch in top_level_branches(&chars) {
        candidates.push(Walker::new(&branch, false).sequence());
        candidates.push(literal_prefix(&branch));
    }
    for suffix in ["", "x", "a", "0", "1", "A", "-", "_", "."] {
        candidates.push(format!("{prefix}{suffix}"));
    }
    candidates
        .into_iter()
        .find(|candidate| anchored.is_match(candidate))
        .ok_or_else(|| format!("no simple string matches regex `{pattern}` as a whole"))
}

/// The characters before the first regex operator, unescaped (`\.` is `.`).
fn literal_prefix(chars: &[char]) -> String {
    let mut out = String::new();
    let mut iter = chars.iter().peekable();
    if iter.peek() == Some(&&'^') {
        iter.next();
    }
    while let Some(&c) = iter.next() {
        match c {
            '\\' => match iter.next() {
                Some(&next) if !next.is_ascii_alphanumeric() => out.push(next),
                _ => break,
            },
            '.' | '[' | '(' | ')' | '|' | '*' | '+' | '?' | '{' | '}' | '$' | '^' => {
                // A quantifier applies to the last literal, which may then be absent.
                if matches!(c, '*' | '?' | '{') {
                    out.pop();
                }
                break;
            }
            _ => out.push(c),
        }
    }
    out
}

/// The alternatives of `pattern` at its top level (`a|b(c|d)` gives `a` and `b(c|d)`); one
/// group around the whole pattern is looked into.
fn top_level_branches(chars: &[char]) -> Vec<Vec<char>> {
    let trimmed = trim_anchors(chars);
    let inner = match (trimmed.first(), trimmed.last()) {
        (Some('('), Some(')')) if closing_of_first_group(trimmed) == Some(trimmed.len() - 1) => {
            let body = trimmed.get(1..trimmed.len() - 1).unwrap_or_default();
            strip_group_flags(body)
        }
        _ => trimmed,
    };
    let mut branches = Vec::new();
    let mut current = Vec::new();
    let mut depth = 0usize;
    let mut in_class = false;
    let mut escaped = false;
    for &c in inner {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if in_class {
            in_class = c != ']';
        } else if c == '[' {
            in_class = true;
        } else if c == '(' {
            depth += 1;
        } else if c == ')' {
            depth = depth.saturating_sub(1);
        } else if c == '|' && depth == 0 {
            branches.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    branches.push(current);
    branches
}

fn trim_anchors(chars: &[char]) -> &[char] {
    let chars = chars.strip_prefix(&['^']).unwrap_or(chars);
    match chars.strip_suffix(&['$']) {
        Some(rest) if !rest.ends_with(&['\\']) => rest,
        _ => chars,
    }
}

/// `?:`, `?P<name>`, `?<name>` and `?flags:` at the start of a group body, skipped.
fn strip_group_flags(body: &[char]) -> &[char] {
    if body.first() != Some(&'?') {
        return body;
    }
    let end = body
        .iter()
        .position(|&c| matches!(c, ':' | '>' | ')'))
        .map_or(0, |i| i + 1);
    body.get(end..).unwrap_or(body)
}

/// The index of the `)` closing the group opened at index 0.
fn closing_of_first_group(chars: &[char]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_class = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if in_class {
            in_class = c != ']';
        } else if c == '[' {
            in_class = true;
        } else if c == '(' {
            depth += 1;
        } else if c == ')' {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Writes one string a pattern plausibly matches: literals as they are, `.` and classes as one
/// of their characters, each group's first alternative; an atom under `*` or `?` left out (or,
/// with `keep_optional`, kept once), under `+` kept once, under `{n,…}` repeated `n` times.
struct Walker<'a> {
    chars: &'a [char],
    at: usize,
    keep_optional: bool,
}

impl<'a> Walker<'a> {
    fn new(chars: &'a [char], keep_optional: bool) -> Self {
        Walker {
            chars,
            at: 0,
            keep_optional,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += 1;
        c
    }

    /// A sequence up to the end or a `)`; at a `|` the rest of the group is skipped.
    fn sequence(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            match c {
                ')' => break,
                '|' => {
                    self.skip_alternatives();
                    break;
                }
                _ => {
                    let atom = self.atom();
                    let count = self.quantifier();
                    for _ in 0..count {
                        out.push_str(&atom);
                    }
                }
            }
        }
        out
    }

    /// Skips to the `)` closing the current group (left for the caller), or the end.
    fn skip_alternatives(&mut self) {
        let mut depth = 0usize;
        let mut in_class = false;
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    self.at += 1;
                }
                ']' if in_class => in_class = false,
                _ if in_class => {}
                '[' => in_class = true,
                '(' => depth += 1,
                ')' if depth == 0 => return,
                ')' => depth -= 1,
                _ => {}
            }
            self.at += 1;
        }
    }

    fn atom(&mut self) -> String {
        match self.bump() {
            None | Some('^' | '$') => String::new(),
            Some('.') => "x".to_owned(),
            Some('\\') => match self.bump() {
                Some('d') => "0".to_owned(),
                Some('w' | 'S' | 'D') => "x".to_owned(),
                Some('s') => " ".to_owned(),
                Some('W') => "-".to_owned(),
                Some('b' | 'B' | 'A' | 'z') | None => String::new(),
                Some(other) => other.to_string(),
            },
            Some('[') => self.class(),
            Some('(') => {
                let rest = self.chars.get(self.at..).unwrap_or_default();
                if rest.first() == Some(&'?')
                    && let Some(end) = rest.iter().position(|&c| matches!(c, ':' | '>' | ')'))
                    && rest.get(end) == Some(&')')
                {
                    // A flags-only group such as `(?i)`: nothing to write.
                    self.at += end + 1;
                    return String::new();
                }
                self.at += rest.len() - strip_group_flags(rest).len();
                let inner = self.sequence();
                if self.peek() == Some(')') {
                    self.at += 1;
                }
                inner
            }
            Some(other) => other.to_string(),
        }
    }

    /// One character of a `[...]` class: its first member, or for a negated class a common
    /// character it does not list.
    fn class(&mut self) -> String {
        let negated = self.peek() == Some('^');
        if negated {
            self.at += 1;
        }
        let mut members = Vec::new();
        let mut first = true;
        while let Some(c) = self.bump() {
            match c {
                ']' if !first => break,
                '\\' => {
                    if let Some(escaped) = self.bump() {
                        members.push(match escaped {
                            'd' => '0',
                            'w' => 'x',
                            's' => ' ',
                            other => other,
                        });
                    }
                }
                other => members.push(other),
            }
            first = false;
        }
        if negated {
            ['x', 'a', '0', '-', '_']
                .into_iter()
                .find(|c| !members.contains(c))
                .map(String::from)
                .unwrap_or_default()
        } else {
            members.first().map(char::to_string).unwrap_or_default()
        }
    }

    /// How many times to write the atom just read.
    fn quantifier(&mut self) -> usize {
        let optional = usize::from(self.keep_optional);
        let count = match self.peek() {
            Some('*' | '?') => optional,
            Some('+') => 1,
            Some('{') => {
                let rest: String = self
                    .chars
                    .get(self.at + 1..)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                match rest.split_once('}') {
                    Some((inside, _))
                        if !inside.is_empty()
                            && inside.chars().all(|c| c.is_ascii_digit() || c == ',') =>
                    {
                        // `{` and the digits; the closing `}` is stepped over below.
                        self.at += inside.chars().count() + 1;
                        inside
                            .split(',')
                            .next()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(1)
                    }
                    _ => return 1,
                }
            }
            _ => return 1,
        };
        self.at += 1;
        // A lazy marker after a quantifier changes nothing here.
        if self.peek() == Some('?') {
            self.at += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(pattern: &str) -> String {
        let value = whole_match(pattern).unwrap_or_else(|e| panic!("{e}"));
        let re = Regex::new(&format!("^(?:{pattern})$")).unwrap_or_else(|e| panic!("{e}"));
        assert!(re.is_match(&value), "{pattern} does not match {value}");
        value
    }

    #[test]
    fn regexes_get_a_value_they_match_whole() {
        assert_eq!(found("insider"), "insider");
        assert_eq!(found("^beta-[0-9]+$"), "beta-0");
        assert_eq!(found("(alpha|beta)"), "alpha");
        found(".*canary.*");
        found("user-\\d{3}");
        found("(?i)Chrome/[0-9]+\\.[0-9]+");
        found("[^,]+");
        found("a|b|c");
        found("x?y*z+");
        found("(?:foo|bar)baz");
    }

    #[test]
    fn an_impossible_or_invalid_regex_is_reported_not_guessed() {
        assert!(whole_match("a\\bb").is_err());
        assert!(whole_match("(unclosed").is_err());
    }

    #[test]
    fn a_match_becomes_a_request() {
        let wanted: RequestMatch = serde_json::from_value(serde_json::json!({
            "headers": {"X-User": {"prefix": "in"}, "x-a": {"regex": "v[0-9]"}},
            "cookie": {"name": "beta"},
            "uri": {"prefix": "/api"},
            "queryParams": {"q": {"exact": "1"}},
            "method": "post"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let request =
            matching_request(&Request::to("web", "/"), &wanted).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            request.headers.get("x-user").map(String::as_str),
            Some("inx")
        );
        assert_eq!(request.headers.get("x-a").map(String::as_str), Some("v0"));
        assert_eq!(
            request.cookies.get("beta").map(String::as_str),
            Some("always")
        );
        assert_eq!(request.path, "/api");
        assert_eq!(request.query.get("q").map(String::as_str), Some("1"));
        assert_eq!(request.method, "POST");
    }
}
