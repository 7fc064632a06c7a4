//! Where a field is written in the YAML text, so a problem can name its line.

/// One YAML line's structure: a sequence item's dash, or a mapping key.
#[derive(Debug, Clone, Copy)]
enum Token<'a> {
    /// `- ` at this indent (on `line`).
    Item { indent: usize },
    /// `key:` at this indent.
    Key {
        indent: usize,
        key: &'a str,
        line: usize,
    },
}

impl Token<'_> {
    fn indent(&self) -> usize {
        match *self {
            Token::Item { indent } | Token::Key { indent, .. } => indent,
        }
    }
}

/// Block-style YAML's keys and dashes, in order (`- name: x` gives an item, then a key two
/// columns further in).
fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        let mut indent = line.len() - rest.len();
        while rest == "-" || rest.starts_with("- ") {
            out.push(Token::Item { indent });
            let after = rest[1..].trim_start();
            indent += rest.len() - after.len();
            rest = after;
        }
        let key = rest
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        let is_key = !key.is_empty()
            && rest
                .get(rest.find(key).unwrap_or(0) + key.len()..)
                .is_some_and(|r| r.trim_start_matches(['"', '\'']).starts_with(':'));
        if is_key {
            out.push(Token::Key {
                indent,
                key,
                line: i + 1,
            });
        }
    }
    out
}

/// A path segment: a key, or the index of a sequence item (`ca[1]` is `ca` then `1`).
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(field: &str) -> Option<Vec<Segment<'_>>> {
    let mut out = Vec::new();
    for part in field.split('.') {
        let mut pieces = part.split('[');
        out.push(Segment::Key(pieces.next()?));
        for index in pieces {
            out.push(Segment::Index(index.strip_suffix(']')?.parse().ok()?));
        }
    }
    Some(out)
}

/// The 1-based line of a field path (`ca.certificate`, `ca[1].name`) in YAML text, found by
/// walking keys and sequence items by indentation. Best effort: `None` when the key is not
/// written (a default).
pub fn locate(text: &str, field: &str) -> Option<usize> {
    if field.is_empty() {
        return None;
    }
    let tokens = tokens(text);
    let mut at = 0usize;
    // Tokens at or left of `parent` end the current block.
    let mut parent: Option<usize> = None;
    let mut line = None;
    for segment in segments(field)? {
        let inside = |t: &Token| parent.is_none_or(|p| t.indent() > p);
        match segment {
            Segment::Key(want) => {
                let level = tokens[at..].iter().find(|t| inside(t))?.indent();
                let found = tokens[at..]
                    .iter()
                    .take_while(|t| inside(t))
                    .position(|t| matches!(t, Token::Key { indent, key, .. } if *indent == level && *key == want))?;
                at += found;
                let Token::Key {
                    indent, line: l, ..
                } = tokens[at]
                else {
                    return None;
                };
                line = Some(l);
                parent = Some(indent);
                at += 1;
            }
            Segment::Index(n) => {
                // A sequence's dashes may sit at the key's own indent.
                let key_indent = parent?;
                let first = tokens.get(at)?;
                let Token::Item { indent: level } = *first else {
                    return None;
                };
                if level < key_indent {
                    return None;
                }
                let items: Vec<usize> = (at..tokens.len())
                    .take_while(|&i| tokens[i].indent() >= level)
                    .filter(|&i| matches!(tokens[i], Token::Item { indent } if indent == level))
                    .collect();
                at = *items.get(n)? + 1;
                parent = Some(level);
                line = tokens.get(at).and_then(|t| match t {
                    Token::Key { line, .. } => Some(*line),
                    Token::Item { .. } => None,
                });
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::locate;

    #[test]
    fn list_items_by_index() {
        let text = "stack_name: x\nca:\n  - name: a\n    certificate: a.pem\n  - name: b\n    \
                    # note\n    certificate: b.pem\n    verification:\n      certificate_file: v\n\
                    activator:\n  memory_mb: 1\n";
        assert_eq!(locate(text, "ca[0].name"), Some(3));
        assert_eq!(locate(text, "ca[0].certificate"), Some(4));
        assert_eq!(locate(text, "ca[1].name"), Some(5));
        assert_eq!(locate(text, "ca[1].certificate"), Some(7));
        assert_eq!(locate(text, "ca[1].verification.certificate_file"), Some(9));
        assert_eq!(locate(text, "ca[1]"), Some(5));
        assert_eq!(locate(text, "ca[2].name"), None);
        assert_eq!(locate(text, "ca[0].mode"), None);
        assert_eq!(locate(text, "activator.memory_mb"), Some(11));
        // Dashes at the key's own indent.
        let flush = "ca:\n- name: a\n  mode: X\n- name: b\nregion: r\n";
        assert_eq!(locate(flush, "ca[1].name"), Some(4));
        assert_eq!(locate(flush, "ca[0].mode"), Some(3));
        assert_eq!(locate(flush, "region"), Some(5));
    }
}
