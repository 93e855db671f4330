//! The documentation holds together: every relative link in `README.md`,
//! `CONTRIBUTING.md` and `docs/*.md` (files, and `#anchors` as GitHub makes them from
//! headings) resolves inside the repository; no page names files that only exist outside
//! it; and `.ci/run` runs the test command that `docs/development.md` gives.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown pages whose links are checked.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let contributing = root().join("CONTRIBUTING.md");
    if contributing.exists() {
        pages.push(contributing);
    }
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The page's text with fenced code blocks and inline code spans blanked out (links in
/// examples are not links), keeping line breaks so that line numbers stay right.
fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
                out.push(' ');
            } else {
                out.push(if in_code { ' ' } else { c });
            }
        }
        out.push('\n');
    }
    out
}

/// Every `[text](target)` / `![alt](target)` target and `[label]: target` definition,
/// with its line number.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    for (n, line) in prose(text).lines().enumerate() {
        let bytes = line.as_bytes();
        let mut i = 0;
        while let Some(pos) = line[i..].find("](") {
            let start = i + pos + 2;
            let mut depth = 0;
            let mut end = start;
            while end < bytes.len() {
                match bytes[end] {
                    b'(' => depth += 1,
                    b')' if depth == 0 => break,
                    b')' => depth -= 1,
                    _ => {}
                }
                end += 1;
            }
            // `[text](target "title")`: the target is the first word.
            let target = line[start..end].split_whitespace().next().unwrap_or("");
            targets.push((n + 1, target.trim_matches(['<', '>']).to_owned()));
            i = end.min(line.len());
        }
        let t = line.trim_start();
        if t.starts_with('[')
            && let Some(close) = t.find("]:")
        {
            let target = t[close + 2..].split_whitespace().next().unwrap_or("");
            targets.push((n + 1, target.to_owned()));
        }
    }
    targets
}

/// GitHub's anchor for a heading: the rendered text, lowercased, with everything but
/// letters, digits, spaces, `-` and `_` removed, and spaces turned into `-`.
fn slug(heading: &str) -> String {
    // Rendered text: a link shows its text, code spans and emphasis lose their marks.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        match rest[open..].find("](") {
            Some(mid) => {
                let close = rest[open + mid..].find(')').map(|c| open + mid + c);
                let Some(close) = close else { break };
                text.push_str(&rest[..open]);
                text.push_str(&rest[open + 1..open + mid]);
                rest = &rest[close + 1..];
            }
            None => break,
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors a page's headings get, `-1`, `-2`, … added to repeated ones as GitHub does.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let heading = heading.trim().replace(['`', '*'], "");
        let base = slug(&heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `path` without `.` and `..`, or `None` when it climbs above the start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// Why `target`, linked from `page`, does not resolve; `None` when it does (or is not a
/// relative link).
fn broken(page: &Path, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("an empty link".into());
    }
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, anchor) = match target.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (target, None),
    };
    let page_rel = page.strip_prefix(root()).unwrap();
    let file_rel = if file.is_empty() {
        page_rel.to_path_buf()
    } else if file.starts_with('/') {
        return Some("an absolute path; link relative to the page".into());
    } else {
        match normalise(&page_rel.parent().unwrap().join(file)) {
            Some(p) => p,
            None => return Some("points outside the repository".into()),
        }
    };
    let full = root().join(&file_rel);
    if !full.exists() {
        return Some(format!("{} does not exist", file_rel.display()));
    }
    if let Some(anchor) = anchor {
        if full.extension().is_none_or(|e| e != "md") {
            return Some(format!(
                "#{anchor} in {}, which is not Markdown",
                file_rel.display()
            ));
        }
        let text = std::fs::read_to_string(&full).unwrap();
        if !anchors(&text).contains(anchor) {
            return Some(format!(
                "{} has no heading whose anchor is #{anchor}",
                file_rel.display()
            ));
        }
    }
    None
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (line, target) in link_targets(&text) {
            checked += 1;
            if let Some(why) = broken(&page, &target) {
                problems.push(format!(
                    "{}:{line}: ({target}): {why}",
                    page.strip_prefix(root()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
    // The README alone links a dozen pages; finding fewer means the parser broke.
    assert!(checked > 50, "only {checked} links found");
}

#[test]
fn pages_name_no_files_from_outside_the_repository() {
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for outside in ["../shared", "shared/docs", "design.md", "style.md", "ha.md"] {
            assert!(
                !text.contains(outside),
                "{} names {outside:?}, which is not in the repository",
                page.display()
            );
        }
    }
}

#[test]
fn ci_runs_the_test_command_the_development_page_gives() {
    let dev = std::fs::read_to_string(root().join("docs/development.md")).unwrap();
    let after = dev
        .split_once("The test command")
        .expect("docs/development.md says \"The test command\"")
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("```"))
        .expect("a ```sh block follows \"The test command\"")
        .0;
    let command = block.trim();
    assert_eq!(command.lines().count(), 1, "one command: {command:?}");
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == command),
        ".ci/run does not run {command:?}, the test command of docs/development.md"
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Install with systemd"), "install-with-systemd");
    assert_eq!(slug("[[notify]]"), "notify");
    assert_eq!(slug("Webhooks ([[notify]])"), "webhooks-notify");
    assert_eq!(
        slug("Dead-man's switch (ping_url)"),
        "dead-mans-switch-ping_url"
    );
    assert_eq!(
        slug("Secrets: API keys, webhook and ping URLs"),
        "secrets-api-keys-webhook-and-ping-urls"
    );
    assert_eq!(slug("See [the API](x.md) here"), "see-the-api-here");
    let a = anchors("# A\n## Day two\n```\n# not a heading\n```\n## Day two\n#nope\n");
    let want: HashSet<String> = ["a", "day-two", "day-two-1"].map(String::from).into();
    assert_eq!(a, want);
    // Links in code are not links; link titles are not part of the target.
    let t = link_targets("a [x](y.md \"t\") `[no](z.md)`\n```\n[no](w.md)\n```\n[r]: v.md\n");
    assert_eq!(t, vec![(1, "y.md".to_owned()), (5, "v.md".to_owned())]);
}
