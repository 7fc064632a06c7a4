//! Where a field is written in the YAML text, so a problem can name its line.

/// The 1-based line of a dotted field path in YAML text, found by walking keys by
/// indentation. Best effort: `None` when the key is not written (a default).
pub fn locate(text: &str, field: &str) -> Option<usize> {
    if field.is_empty() {
        return None;
    }
    let mut keys = field.split('.');
    let mut want = keys.next()?;
    let mut min_indent = 0usize;
    let mut parent_indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(p) = parent_indent {
            if indent <= p {
                return None; // left the parent's block without finding the key
            }
        }
        if indent < min_indent {
            continue;
        }
        let key = trimmed
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(['"', '\'']);
        if key == want
            && trimmed[key.len()..]
                .trim_start_matches(['"', '\''])
                .starts_with(':')
        {
            match keys.next() {
                None => return Some(i + 1),
                Some(next) => {
                    want = next;
                    parent_indent = Some(indent);
                    min_indent = indent + 1;
                }
            }
        }
    }
    None
}
