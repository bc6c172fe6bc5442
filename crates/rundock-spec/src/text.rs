//! Text for people: the aligned columns of `rundock status`, `rundock history` and
//! `rundock history --all-hosts`, so the three tables line up the same way.

/// `rows` as lines of columns padded to the widest cell (in characters) plus two
/// spaces; the last column is not padded and trailing spaces are trimmed. Each line ends
/// in a newline. A header, if any, is the first row.
pub fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_characters_and_leave_the_last_unpadded() {
        let rows = [
            ["NAME".to_string(), "→".to_string(), "END".to_string()],
            ["a".to_string(), "x → y".to_string(), "".to_string()],
        ];
        assert_eq!(columns(&rows), "NAME  →      END\na     x → y\n");
    }
}
