//! What is wrong with a config and where: [`Problem`]s with their line, column and key
//! path, collected in [`Problems`] while the file is read, and the [`Reported`] proof that
//! a read which failed said why.

use std::path::Path;

/// Byte offset → line and column, by binary search over line starts (a config with
/// 10 000 servers has ~100 000 values; scanning from the start for each would be quadratic).
pub struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// The place at `offset`, named `path`.
    pub fn loc(&self, offset: usize, path: String) -> Loc {
        let (line, col) = self.line_col(offset);
        Loc {
            offset,
            line,
            col,
            path,
        }
    }

    /// The length of the text in bytes: the offset of its end.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn problem(&self, offset: usize, path: &str, message: String) -> Problem {
        let (line, col) = self.line_col(offset);
        Problem {
            offset,
            line,
            col,
            path: path.to_owned(),
            message,
            unavailable_secret: false,
        }
    }
}

/// One thing wrong with the config, at a place in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub offset: usize,
    pub line: usize,
    pub col: usize,
    /// The key's path, e.g. `servers[1].schedule`; empty for a whole-file problem.
    pub path: String,
    pub message: String,
    /// A secret (API key, webhook URL) that cannot be read in this environment: a file
    /// that is missing or unreadable, an unset variable. The service may well see it (under
    /// systemd, `${CREDENTIALS_DIRECTORY}` exists only inside the unit), so `check` says so.
    pub unavailable_secret: bool,
}

impl Problem {
    /// The same problem, marked as a secret that this environment cannot read.
    pub fn secret_unavailable(mut self) -> Problem {
        self.unavailable_secret = true;
        self
    }

    /// `FILE:LINE:COL: key.path: message`.
    pub fn render(&self, file: &Path) -> String {
        if self.path.is_empty() {
            format!(
                "{}:{}:{}: {}",
                file.display(),
                self.line,
                self.col,
                self.message
            )
        } else {
            format!(
                "{}:{}:{}: {}: {}",
                file.display(),
                self.line,
                self.col,
                self.path,
                self.message
            )
        }
    }
}

/// Proof that a problem was recorded, as rustc's `ErrorGuaranteed` is proof that an error
/// was emitted: only [`Problems::report`] makes one. A read that returns `Err(Reported)`
/// has therefore said what is wrong, and its caller only has to stop using the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reported(());

/// Every problem found so far. A walk over the file records into one of these and goes on,
/// so that the user sees every problem at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// Records `problem`; the proof is what the failed read returns.
    pub fn report(&mut self, problem: Problem) -> Reported {
        self.0.push(problem);
        Reported(())
    }

    /// `result`, with its problem (if any) recorded.
    pub fn check<T>(&mut self, result: Result<T, Problem>) -> Result<T, Reported> {
        result.map_err(|p| self.report(p))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems in file order, each once.
    pub fn into_sorted(mut self) -> Vec<Problem> {
        self.0.sort_by_key(|p| p.offset);
        self.0.dedup();
        self.0
    }
}

/// A value with where it came from, so that a later check (one that needs several values
/// together) can still point at the right place.
#[derive(Clone, Debug)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> Located<T> {
    pub fn problem(&self, message: String) -> Problem {
        self.loc.problem(message)
    }
}

/// A resolved place: key path, line, column.
#[derive(Clone, Debug)]
pub struct Loc {
    offset: usize,
    line: usize,
    col: usize,
    path: String,
}

impl Loc {
    pub fn problem(&self, message: String) -> Problem {
        Problem {
            offset: self.offset,
            line: self.line,
            col: self.col,
            path: self.path.clone(),
            message,
            unavailable_secret: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let idx = LineIndex::new("a = 1\nbé = 2\n");
        assert_eq!(idx.line_col(0), (1, 1));
        assert_eq!(idx.line_col(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(idx.line_col(9), (2, 3));
    }
}
