//! Test support for driver authors (cargo feature `test-support`): a check that no piece of an
//! unquoted password ever reaches a driver's argument errors.
//!
//! A password written without quotes (`password=correct horse=battery`) reads as more pairs
//! than the user meant; whatever its pieces turn into (an unknown key, a known key of another
//! driver, the value of a key the driver knows), the error must name none of them. Each
//! driver runs `assert_no_piece_leaks` over its own parser with its own argument names.

use crate::{ConnArgs, DriverError};

/// Words of generated passwords: each run of three characters of the mixed ones holds a
/// digit; `sslmode`, `db` and `name` are argument names of some driver, `x` a one-letter key.
const WORDS: &[&str] = &[
    "K3y", "V4l7e", "Pa55", "W0rd9", "x", "sslmode", "db", "name",
];

/// What may stand between the words of an unquoted password.
const SEPARATORS: &[&str] = &[" ", "=", " = ", "='", "\t"];

/// Whether `shown` gives `piece` of a password away: the piece in backticks or after `=`
/// (how messages quote keys and values), or, for a piece that is no argument name, the
/// piece itself, or any run of three of its characters that holds a digit (no fixed text of
/// a message has a run like `k3y`; runs of letters do: `ect` is in "connection").
pub fn gives_away(shown: &str, piece: &str) -> bool {
    let (shown, piece) = (shown.to_ascii_lowercase(), piece.to_ascii_lowercase());
    if shown.contains(&format!("`{piece}`")) || shown.contains(&format!("={piece}")) {
        return true;
    }
    if ConnArgs::ANY_DRIVER_KEYS.contains(&piece.as_str()) || piece.len() < 3 {
        return false;
    }
    let chars: Vec<char> = piece.chars().collect();
    shown.contains(&piece)
        || chars
            .windows(3)
            .filter(|run| run.iter().any(char::is_ascii_digit))
            .any(|run| shown.contains(&run.iter().collect::<String>()))
}

/// Every password of two or three words joined by separators.
pub fn passwords() -> Vec<String> {
    let mut out = Vec::new();
    for a in WORDS {
        for b in WORDS {
            for s in SEPARATORS {
                out.push(format!("{a}{s}{b}"));
                for c in WORDS {
                    for t in SEPARATORS {
                        out.push(format!("{a}{s}{b}{t}{c}"));
                    }
                }
            }
        }
    }
    out
}

/// Runs `parse` on every generated password in each of `templates` (`{}` stands for the
/// password; in a URL template its spaces become `&`) and panics on the first error that
/// gives a piece of it away, in the message or the error's `Debug`. Pieces that are among
/// `own_names` (the driver's own keys and aliases) are not checked: they are not unknown keys.
pub fn assert_no_piece_leaks(
    own_names: &[&str],
    templates: &[&str],
    parse: impl Fn(&str) -> Result<(), DriverError>,
) {
    for password in passwords() {
        for template in templates {
            let written = if template.contains("://") {
                password.replace([' ', '\t'], "&")
            } else {
                password.clone()
            };
            let text = template.replace("{}", &written);
            let Err(error) = parse(&text) else { continue };
            let shown = format!("{error} {error:?}");
            for piece in password
                .split(|c: char| c.is_whitespace() || c == '=' || c == '\'' || c == '&')
                .filter(|p| !p.is_empty() && !own_names.contains(p))
            {
                assert!(
                    !gives_away(&shown, piece),
                    "`{piece}` of {text:?} leaked: {shown}"
                );
            }
        }
    }
}

/// Each of `cases` (argument text, and the pieces of its unquoted password) must be refused by
/// `parse` as `InvalidArgs`, with none of the pieces given away in the message or `Debug`.
pub fn assert_refused_without_pieces(
    cases: &[(&str, &[&str])],
    parse: impl Fn(&str) -> Result<(), DriverError>,
) {
    for (text, pieces) in cases {
        let Err(error) = parse(text) else {
            panic!("{text:?} was accepted");
        };
        assert_eq!(
            error.kind(),
            crate::DriverErrorKind::InvalidArgs,
            "{text}: {error}"
        );
        let shown = format!("{error} {error:?}");
        for piece in *pieces {
            assert!(!gives_away(&shown, piece), "{piece} of {text}: {shown}");
        }
    }
}

/// How every driver's parser treats a key it does not know: an unknown key is never named
/// (it may be a piece of an unquoted password; the message gives its position, as "argument
/// 2", and says how to quote a value), while `foreign`, a key only another driver knows, is
/// named in backticks (a hint that helps). `parse` is the driver's parser; the arguments are
/// `host=h <key>=…`.
pub fn assert_unknown_keys_named_only_when_known(
    parse: impl Fn(&str) -> Result<(), DriverError>,
    foreign: &str,
) {
    let Err(error) = parse("host=h frobnicate=1") else {
        panic!("an unknown key was accepted");
    };
    let message = error.message();
    assert!(!message.contains("frobnicate"), "{message}");
    assert!(message.contains("argument 2"), "{message}");
    assert!(message.contains("password='"), "{message}");
    let Err(error) = parse(&format!("host=h {foreign}=1")) else {
        panic!("`{foreign}`, a key of another driver, was accepted");
    };
    assert!(
        error.message().contains(&format!("`{foreign}`")),
        "{}",
        error.message()
    );
}
