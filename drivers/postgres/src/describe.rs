//! Column names for a query that returned no rows, without a named statement.
//!
//! `Client::query_typed` runs the unnamed statement and reads its row description, but
//! `tokio-postgres` 0.7 hands the columns out only through the rows (`Row::columns`): with zero rows
//! they are lost. Its only API that describes a statement, `Client::prepare`, always creates a
//! *named* statement (`s0`, `s1`, … from a process-wide counter), which lives on one server
//! session until the `Statement` is dropped and its Close is sent, in a later request. Behind a
//! transaction-mode PgBouncer those two requests may go to different server connections: the
//! statement stays behind on the first (for that connection's lifetime), and another process
//! whose counter reaches the same name there fails with "prepared statement \"s0\" already
//! exists". `simple_query` reports the row description of a zero-row result, but it cannot
//! take parameters and would run the statement a second time.
//!
//! So a query that came back empty is asked once more, as [`one_null_row`] wraps it: a
//! statement that returns exactly one row, all NULL, with the query's columns, from a
//! `LIMIT 0` subquery that the executor never reads from, so nothing of the query runs again
//! (no function is called, no row is read or locked). It goes through `query_typed` with the
//! same parameters: one more round trip, only for empty results, still unnamed.
//!
//! Only plain queries can be a subquery, and a wrapper the server rejects would abort the
//! caller's transaction, so the wrapper is used only when `sql` surely is one: it starts with
//! `SELECT`, `VALUES`, `TABLE`, `WITH` or `(` (after comments), has no `;` but at its end, and
//! does not contain the word `INTO` (`SELECT … INTO` creates a table) nor, after `WITH` or `(`,
//! a data-modifying keyword (`INSERT`, `UPDATE`, `DELETE`, `MERGE`: such a `WITH` must stay at
//! the top level). The words are matched anywhere, strings and comments included: a false match
//! only costs the column names. Any other statement that returns no rows (`INSERT … RETURNING`
//! that matched nothing, `FETCH`, `EXECUTE`, …) comes back with no column names.

/// `sql` as a statement that returns one row of NULLs with `sql`'s result columns without
/// running `sql`, or `None` when `sql` is not surely a plain query (see the module docs).
pub(crate) fn one_null_row(sql: &str) -> Option<String> {
    let body = sql.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    if body.contains(';') {
        return None;
    }
    let plain = match first_token(body)?.as_str() {
        "SELECT" | "VALUES" | "TABLE" => !has_word(body, &["INTO"]),
        // A parenthesised statement may hide a `WITH` (it may even be one).
        "WITH" | "(" => !has_word(body, &["INTO", "INSERT", "UPDATE", "DELETE", "MERGE"]),
        _ => false,
    };
    // The newline ends a trailing `--` comment before the closing parenthesis.
    plain.then(|| {
        format!(
            "SELECT pool_q.* FROM (SELECT) AS pool_one LEFT JOIN \
             (SELECT * FROM (\n{body}\n) AS pool_s LIMIT 0) AS pool_q ON true"
        )
    })
}

/// The first keyword of `sql` in upper case (or `(`), after whitespace and comments; `None` if
/// a comment is not closed or nothing follows.
fn first_token(sql: &str) -> Option<String> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n')?.1;
        } else if rest.starts_with("/*") {
            rest = after_block_comment(rest)?;
        } else {
            break;
        }
    }
    if rest.starts_with('(') {
        return Some("(".to_owned());
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    (!word.is_empty()).then(|| word.to_ascii_uppercase())
}

/// What follows the (possibly nested) block comment `sql` starts with.
fn after_block_comment(sql: &str) -> Option<&str> {
    let mut depth = 0usize;
    let mut i = 0;
    let bytes = sql.as_bytes();
    while i + 1 < bytes.len() {
        match &bytes[i..i + 2] {
            b"/*" => {
                depth += 1;
                i += 2;
            }
            b"*/" => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(&sql[i..]);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Whether `sql` contains one of `words` (upper case) as a whole word, in any case.
fn has_word(sql: &str, words: &[&str]) -> bool {
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .any(|w| words.iter().any(|word| w.eq_ignore_ascii_case(word)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_queries_are_wrapped() {
        for sql in [
            "SELECT 1 AS one WHERE false",
            "  select k from t where k = $1 for update;  ",
            "VALUES (1)",
            "TABLE t",
            "(SELECT 1) UNION (SELECT 2)",
            "-- lookup\n/* by /* nested */ id */ SELECT k FROM t -- trailing",
            "WITH x AS (SELECT 1 AS q) SELECT * FROM x",
        ] {
            let wrapped = one_null_row(sql).unwrap_or_else(|| panic!("{sql}"));
            assert!(wrapped.contains(sql.trim().trim_end_matches(';').trim_end()));
            assert!(!wrapped.contains(';'), "{wrapped}");
        }
    }

    #[test]
    fn anything_else_is_left_alone() {
        for sql in [
            "INSERT INTO t VALUES (1) RETURNING k",
            "UPDATE t SET k = 1 RETURNING k",
            "DELETE FROM t RETURNING k",
            "SELECT 1 INTO new_table",
            "WITH d AS (DELETE FROM t RETURNING k) SELECT * FROM d",
            "(WITH d AS (DELETE FROM t WHERE k = $1 RETURNING k) SELECT * FROM d)",
            "SELECT 1; SELECT 2",
            "SELECT ';'",
            "FETCH ALL FROM c",
            "EXECUTE mine",
            "SHOW search_path",
            "/* never closed SELECT 1",
            "-- only a comment",
            "",
        ] {
            assert_eq!(one_null_row(sql), None, "{sql}");
        }
    }
}
